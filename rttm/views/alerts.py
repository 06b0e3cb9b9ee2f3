"""Alerts now (pending and firing), how their notifications went, and recent transitions.

Each active alert carries ``delivery``: how its firing notification went, from the outbox
(``delivered``, ``retrying``, ``queued``, ``refused``, ``history`` — fired on data older than
the horizon, not sent —, ``not configured`` — no receiver when it fired —, or ``None`` while
pending, which is never sent), ``delivery_error`` (the last failure or refusal), and
``silenced_by`` (the Alertmanager silences muting it; ``None`` when not known or pending).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rttm.alerts import outbox
from rttm.alerts.notifications import fingerprint, manager_labels
from rttm.alerts.stored import ALERT_COLUMNS, LATEST_PER_SERIES
from rttm.views.common import Conn, alert

_CURRENT = f"""
SELECT latest.*, sent.statuses, sent.attempts, sent.last_error
FROM ({LATEST_PER_SERIES}) latest
LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT o.status) AS statuses, max(o.attempts) AS attempts,
           max(o.last_error) AS last_error
    FROM rttm_alert_outbox o
    WHERE o.rule = latest.rule AND o.labels = latest.labels
      AND o.started_at = latest.started_at AND o.state = 'firing'
) sent ON true
WHERE latest.state IN ('pending', 'firing')
ORDER BY array_position(ARRAY['critical', 'warning', 'info'], latest.severity), latest.started_at
"""  # noqa: S608 - a constant column list, no input
_RECENT = f"SELECT {ALERT_COLUMNS} FROM rttm_alerts ORDER BY at DESC, rule LIMIT %s"  # noqa: S608


def delivery_state(state: str, statuses: Sequence[str] | None, attempts: int | None) -> str | None:
    """How the firing notification of an alert went, from its outbox rows' statuses.

    With several receivers: ``refused`` if one refused it, else ``retrying`` or ``queued``
    while one still owes it, else ``delivered`` if one took it.
    """
    if state != "firing":
        return None
    found = set(statuses or ()) - {outbox.SUPERSEDED, outbox.DROPPED}
    if not found:
        return "not configured"
    if outbox.REFUSED in found:
        return "refused"
    if outbox.DUE in found:
        return "retrying" if attempts else "queued"
    return "delivered" if outbox.DELIVERED in found else "history"


def _active_alert(
    row: dict[str, Any], silenced: Mapping[str, Sequence[str]] | None
) -> dict[str, Any]:
    shown = alert(row)
    shown["delivery"] = delivery_state(row["state"], row["statuses"], row["attempts"])
    shown["delivery_error"] = row["last_error"] if shown["delivery"] != "delivered" else None
    if silenced is None or row["state"] != "firing":  # a pending alert is not in Alertmanager
        shown["silenced_by"] = None
    else:
        key = fingerprint(manager_labels(row["rule"], row["labels"], row["severity"]))
        shown["silenced_by"] = list(silenced.get(key, ()))
    return shown


def active(
    conn: Conn, silenced: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """``{"firing": [...], "pending": [...]}``, most severe first.

    ``silenced`` maps Alertmanager fingerprints to silence ids (None: not known).
    """
    rows = [_active_alert(row, silenced) for row in conn.execute(_CURRENT).fetchall()]
    return {
        "firing": [a for a in rows if a["state"] == "firing"],
        "pending": [a for a in rows if a["state"] == "pending"],
    }


def alerts(
    conn: Conn, limit: int = 50, silenced: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Active alerts and the ``limit`` latest transitions, newest first."""
    recent = [alert(row) for row in conn.execute(_RECENT, (limit,)).fetchall()]
    return {**active(conn, silenced), "recent": recent}
