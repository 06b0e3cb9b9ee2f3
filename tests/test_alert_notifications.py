"""What receivers get, built without a server: Alertmanager alerts and webhook payloads."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from rttm.alerts.notifications import (
    SIGNATURE_HEADER,
    AlertRecord,
    fingerprint,
    firing_until,
    manager_alert,
    manager_labels,
    signature,
    webhook_alert,
    webhook_payloads,
)
from rttm.alerts.rules import Rule

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
RULE = Rule(
    name="QueueLagHigh",
    metric="queue_lag",
    op=">",
    threshold=100,
    severity="warning",
    summary="{{ $labels.service }} lags {{ $value }}",
    description="on {{ $labels.topic }}",
    runbook_url="https://runbooks.example/lag",
)


def record(state: str = "firing", **labels: str) -> AlertRecord:
    return AlertRecord(
        rule="QueueLagHigh",
        labels=labels or {"service": "pms", "topic": "t", "empty": ""},
        started_at=START,
        state=state,
        resolved_at=START + timedelta(minutes=3) if state == "resolved" else None,
        value=1500.0,
        severity="warning",
        summary="stored summary",
    )


def test_fingerprints_equal_alertmanagers_for_known_label_sets() -> None:
    # What Debian's Alertmanager (0.25) answered in GET /api/v2/alerts for these labels.
    assert fingerprint({"alertname": "TradeStuck", "severity": "critical"}) == "ade25c4c401e805c"
    labels = {
        "alertname": "QueueLagHigh",
        "service": "pms",
        "severity": "warning",
        "source": "rttm",
        "topic": "t",
    }
    assert fingerprint(labels) == "4aacc596c34d43a2"


def test_labels_are_the_alerts_plus_alertname_severity_and_source_without_empty_ones() -> None:
    assert manager_labels("R", {"b": "2", "a": "", "severity": "x"}, "critical") == {
        "alertname": "R",
        "b": "2",
        "severity": "critical",
        "source": "rttm",
    }


def test_a_firing_alert_for_alertmanager() -> None:
    ends = firing_until(START + timedelta(minutes=1), 240)
    assert ends == START + timedelta(minutes=5)
    assert manager_alert(record(), RULE, "https://rttm.example/", ends) == {
        "labels": {
            "alertname": "QueueLagHigh",
            "service": "pms",
            "severity": "warning",
            "source": "rttm",
            "topic": "t",
        },
        "annotations": {
            "summary": "pms lags 1500",
            "description": "on t",
            "runbook_url": "https://runbooks.example/lag",
        },
        "startsAt": "2026-03-02T14:00:00Z",
        "endsAt": "2026-03-02T14:05:00Z",
        "generatorURL": "https://rttm.example/",
    }


def test_a_resolved_alert_ends_at_its_resolution_and_a_gone_rule_keeps_its_stored_text() -> None:
    alert = manager_alert(record("resolved"), None, None, START + timedelta(days=1))
    assert alert["endsAt"] == "2026-03-02T14:03:00Z"
    assert alert["annotations"] == {"summary": "stored summary"}
    assert "generatorURL" not in alert


def test_an_alert_is_one_rule_labels_and_activation_whatever_its_state() -> None:
    assert (
        record().identity
        == record("resolved").identity
        == ("QueueLagHigh", (("empty", ""), ("service", "pms"), ("topic", "t")), START)
    )
    assert webhook_alert(record(), RULE, None)["generatorURL"] == ""  # no dashboard: no link


def test_a_stuck_trade_links_to_its_trace() -> None:
    stuck = AlertRecord(
        rule="TradeStuck",
        labels={"stage": "positioned"},
        started_at=START,
        state="firing",
        resolved_at=None,
        value=1.0,
        severity="critical",
        summary="",
        trade_id="T 1/2#",
    )
    assert webhook_alert(stuck, None, "http://d:8765")["generatorURL"] == (
        "http://d:8765/#trade=T%201%2F2%23"
    )


def test_webhook_payloads_group_by_alertname_as_alertmanager_does() -> None:
    moved = record("resolved", service="other", topic="t")
    entries = [webhook_alert(record(), RULE, None), webhook_alert(moved, RULE, None)]
    other = AlertRecord(
        rule="Other",
        labels={},
        started_at=START,
        state="resolved",
        resolved_at=START,
        value=0,
        severity="info",
        summary="",
    )
    entries.append(webhook_alert(other, None, None))
    lag, gone = webhook_payloads(entries, "https://rttm.example")
    assert (lag["status"], gone["status"]) == ("firing", "resolved")
    assert lag["version"] == "4"
    assert lag["groupKey"] == '{}:{alertname="QueueLagHigh"}'
    assert lag["groupLabels"] == {"alertname": "QueueLagHigh"}
    assert lag["commonLabels"] == {
        "alertname": "QueueLagHigh",
        "severity": "warning",
        "source": "rttm",
        "topic": "t",
    }
    assert lag["commonAnnotations"] == {
        "description": "on t",
        "runbook_url": "https://runbooks.example/lag",
    }
    assert lag["externalURL"] == "https://rttm.example"
    assert lag["receiver"] == "rttm"
    assert lag["truncatedAlerts"] == 0
    assert [a["status"] for a in lag["alerts"]] == ["firing", "resolved"]
    assert lag["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert lag["alerts"][1]["endsAt"] == "2026-03-02T14:03:00Z"
    assert lag["alerts"][0]["fingerprint"] == fingerprint(lag["alerts"][0]["labels"])
    assert gone["alerts"][0]["annotations"] == {}


def test_the_signature_is_the_bodys_hmac_sha256_in_the_documented_header() -> None:
    assert SIGNATURE_HEADER == "X-RTTM-Signature-256"  # what receivers were told to check
    body = b'{"version": "4"}'
    assert signature(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
