"""What receivers get: Alertmanager v2 alerts and Alertmanager-style webhook payloads.

An :class:`AlertRecord` is one stored transition (a row of ``rttm_alerts``); it becomes

* an alert of Alertmanager's ``POST /api/v2/alerts``: labels ``alertname``, ``severity``,
  the alert's labels and ``source="rttm"``; annotations ``summary``, ``description`` and
  ``runbook_url`` rendered from the rule; ``startsAt`` when it turned firing (as
  Prometheus sends it); ``endsAt`` in the future while it
  fires (Alertmanager resolves it by itself if RTTM stops sending) and the resolution time
  once resolved; ``generatorURL`` into the dashboard;
* the same alert inside a webhook payload in the format of Alertmanager's webhook receiver
  (version 4), so consumers written for Alertmanager read it unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from rttm.alerts import templates
from rttm.alerts.rules import Rule

#: The label every RTTM alert carries, so routes and silences can pick RTTM's alerts out.
SOURCE_NAME: Final = "source"
SOURCE_VALUE: Final = "rttm"
#: The header that carries the webhook body's HMAC-SHA256, as ``sha256=<hex>``.
SIGNATURE_HEADER: Final = "X-RTTM-Signature-256"
WEBHOOK_RECEIVER: Final = "rttm"
_ZERO_TIME: Final = "0001-01-01T00:00:00Z"  # Go's zero time: "no end yet" in webhooks
_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One firing or resolved transition as stored, with a trade to link to if any."""

    rule: str
    labels: Mapping[str, str]
    started_at: datetime
    state: str  # "firing" or "resolved"
    resolved_at: datetime | None
    value: float
    severity: str
    summary: str  # as stored: used when the rule is gone from the rules file
    fired_at: datetime | None = None  # when it turned firing (None: at started_at)
    trade_id: str | None = None  # a stuck trade of the alert (TradeStuck), for the link

    @property
    def identity(self) -> tuple[str, tuple[tuple[str, str], ...], datetime]:
        """(rule, labels, started_at): one alert instance, whatever its state."""
        return self.rule, tuple(sorted(self.labels.items())), self.started_at


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Alertmanager writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def manager_labels(rule: str, labels: Mapping[str, str], severity: str) -> dict[str, str]:
    """The Alertmanager labels of an alert: ``alertname``, ``severity``, ``source="rttm"``.

    Then its own labels, empty values dropped (to Prometheus, an empty label is none).
    """
    found = {name: value for name, value in labels.items() if value}
    found.update(alertname=rule, severity=severity)
    found[SOURCE_NAME] = SOURCE_VALUE
    return dict(sorted(found.items()))


def alert_labels(record: AlertRecord) -> dict[str, str]:
    """:func:`manager_labels` of a stored transition."""
    return manager_labels(record.rule, record.labels, record.severity)


def alert_annotations(record: AlertRecord, rule: Rule | None) -> dict[str, str]:
    """``summary``, ``description`` and ``runbook_url``, each only when there is text."""
    if rule is None:
        found = {"summary": record.summary}
    else:
        found = {
            "summary": templates.render(rule.summary, record.value, record.labels),
            "description": templates.render(rule.description, record.value, record.labels),
            "runbook_url": rule.runbook_url,
        }
    return {name: text for name, text in found.items() if text}


def generator_url(record: AlertRecord, dashboard_url: str | None) -> str:
    """The dashboard, at the stuck trade's trace when there is one ("" without a dashboard)."""
    if dashboard_url is None:
        return ""
    page = dashboard_url.rstrip("/") + "/"
    return page + f"#trade={quote(record.trade_id, safe='')}" if record.trade_id else page


def manager_alert(
    record: AlertRecord, rule: Rule | None, dashboard_url: str | None, ends_at: datetime
) -> dict[str, Any]:
    """The alert as ``POST /api/v2/alerts`` takes it; ``ends_at`` applies while it fires."""
    end = record.resolved_at or ends_at  # only a resolved transition has a resolution time
    alert = {
        "labels": alert_labels(record),
        "annotations": alert_annotations(record, rule),
        "startsAt": iso(record.fired_at or record.started_at),
        "endsAt": iso(end),
    }
    if link := generator_url(record, dashboard_url):
        alert["generatorURL"] = link
    return alert


def firing_until(now: datetime, valid_for_s: float) -> datetime:
    """The ``endsAt`` of a firing alert sent at ``now``."""
    return now + timedelta(seconds=valid_for_s)


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted names and values."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                digest = ((digest ^ byte) * _FNV_PRIME) & 0xFFFF_FFFF_FFFF_FFFF
    return f"{digest:016x}"


def webhook_alert(
    record: AlertRecord, rule: Rule | None, dashboard_url: str | None
) -> dict[str, Any]:
    """The alert as an entry of a webhook payload (``endsAt`` zero while it fires)."""
    labels = alert_labels(record)
    return {
        "status": "firing" if record.resolved_at is None else "resolved",
        "labels": labels,
        "annotations": alert_annotations(record, rule),
        "startsAt": iso(record.fired_at or record.started_at),
        "endsAt": _ZERO_TIME if record.resolved_at is None else iso(record.resolved_at),
        "generatorURL": generator_url(record, dashboard_url),
        "fingerprint": fingerprint(labels),
    }


def webhook_payloads(entries: Sequence[dict[str, Any]], external_url: str) -> list[dict[str, Any]]:
    """Version-4 webhook payloads of :func:`webhook_alert` entries, one per ``alertname``.

    Fields as Alertmanager's webhook receiver sends them: ``status`` (firing while any
    alert of the group fires), ``alerts``, ``groupLabels``, ``commonLabels``,
    ``commonAnnotations``, ``externalURL``, ``groupKey``, ``truncatedAlerts``.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault(entry["labels"]["alertname"], []).append(entry)
    return [
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{name}"}}',
            "truncatedAlerts": 0,
            "status": "firing" if any(e["status"] == "firing" for e in members) else "resolved",
            "receiver": WEBHOOK_RECEIVER,
            "groupLabels": {"alertname": name},
            "commonLabels": _common(e["labels"] for e in members),
            "commonAnnotations": _common(e["annotations"] for e in members),
            "externalURL": external_url,
            "alerts": members,
        }
        for name, members in groups.items()
    ]


def _common(label_sets: Iterable[Mapping[str, str]]) -> dict[str, str]:
    sets = list(label_sets)
    shared = dict(sets[0])  # a group has at least one alert
    for other in sets:
        shared = {k: v for k, v in shared.items() if other.get(k) == v}
    return dict(sorted(shared.items()))


def signature(secret: bytes, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER`: ``sha256=`` and the body's HMAC-SHA256 in hex."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
