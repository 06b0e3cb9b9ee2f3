"""Alert delivery through the outbox to a real Alertmanager and a webhook server.

The metrics sink's writer stores transitions as the flow does; a :class:`Sender` delivers
them. Receivers go away and come back, refuse, come in pairs; history stays quiet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from rttm.alerts import sender as sender_module
from rttm.alerts.engine import Transition
from rttm.alerts.notifications import SIGNATURE_HEADER, fingerprint
from rttm.alerts.receivers import Delivery, from_env
from rttm.alerts.rules import Rule
from rttm.alerts.sender import Sender
from rttm.metrics.merge import MetricsOutput
from rttm.metrics.store import MetricsWriter
from rttm.stack.postgres import start_postgres
from rttm.stack.processes import free_port
from tests.alerting import Alertmanager, WebhookServer, wait_for
from tests.conftest import TEST_POSTGRES_SETTINGS
from tests.ingest_helpers import REPO, migrated

pytestmark = pytest.mark.integration

STUCK_RULE = Rule(
    name="TradeStuck",
    metric="stuck_trades",
    op=">",
    threshold=0,
    severity="critical",
    summary="{{ $value }} trades stuck after {{ $labels.stage }}",
    description="No terminal event at {{ $labels.service }} within the allowed time.",
    runbook_url="https://runbooks.example/rttm/trade-stuck",
)
LABELS = (("service", "pms-core"), ("stage", "positioned"))
DASHBOARD = "http://rttm.example:8000"


def transition(
    state: str, at: datetime, started: datetime | None = None, **extra: Any
) -> Transition:
    started = started or at
    fields: dict[str, Any] = {
        "rule": "TradeStuck",
        "labels": LABELS,
        "state": state,
        "value": 2.0,
        "started_at": started,
        "resolved_at": at if state == "resolved" else None,
        "at": at,
        "severity": "critical",
        "summary": "2 trades stuck after positioned",
    }
    fields.update(extra)
    return Transition(**fields)


def write(url: str, delivery: Delivery, *transitions: Transition) -> None:
    writer = MetricsWriter(url, None, delivery)
    writer.write([MetricsOutput(transitions=list(transitions))])
    writer.close()


def outbox_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT receiver, state, status, attempts, last_error IS NOT NULL"
            " FROM rttm_alert_outbox ORDER BY id"
        ).fetchall()


@pytest.fixture
def sender_for(migrated_db: str) -> Iterator[Any]:
    made: list[Sender] = []

    def make(delivery: Delivery) -> Sender:
        sender = Sender(migrated_db, delivery, [STUCK_RULE])
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.stop(timeout=1)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_a_firing_alert_reaches_alertmanager_with_its_labels_annotations_and_link(
    migrated_db: str, alertmanager: Alertmanager, webhook: WebhookServer, sender_for: Any
) -> None:
    delivery = from_env(
        {"RTTM_ALERTMANAGER_URL": alertmanager.url, "RTTM_DASHBOARD_URL": DASHBOARD}
    )
    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "INSERT INTO rttm_stuck_trades VALUES ('T/1 x', now(), 'positioned', 'pms-core',"
            " 'POSITION_UPDATED', now(), NULL)"
        )
    started = now() - timedelta(seconds=20)
    write(migrated_db, delivery, transition("firing", started))
    sender = sender_for(delivery)
    assert sender.run_once()

    [held] = alertmanager.alerts()
    assert held["labels"] == {
        "alertname": "TradeStuck",
        "severity": "critical",
        "service": "pms-core",
        "stage": "positioned",
        "source": "rttm",
    }
    assert held["annotations"] == {
        "summary": "2 trades stuck after positioned",
        "description": "No terminal event at pms-core within the allowed time.",
        "runbook_url": "https://runbooks.example/rttm/trade-stuck",
    }
    assert held["generatorURL"] == f"{DASHBOARD}/#trade=T%2F1%20x"
    assert held["status"]["state"] == "active"
    assert held["fingerprint"] == fingerprint(held["labels"])
    assert datetime.fromisoformat(held["startsAt"]) == started
    assert datetime.fromisoformat(held["endsAt"]) > now() + timedelta(minutes=3)  # 4 resends
    assert outbox_rows(migrated_db) == [
        (f"alertmanager {alertmanager.url}", "firing", "delivered", 0, False)
    ]

    resolved_at = now()
    write(migrated_db, delivery, transition("resolved", resolved_at, started))
    assert sender.run_once()
    assert alertmanager.alerts() == []  # resolved: Alertmanager lists it no longer
    notified = wait_for(lambda: [p for p in webhook.payloads() if p["status"] == "resolved"])
    assert notified[0]["alerts"][0]["labels"]["alertname"] == "TradeStuck"
    assert datetime.fromisoformat(notified[0]["alerts"][0]["endsAt"]) == resolved_at


def test_an_alert_that_fires_while_alertmanager_is_down_arrives_when_it_is_back(
    migrated_db: str, alertmanager: Alertmanager, sender_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    delivery = from_env({"RTTM_ALERTMANAGER_URL": alertmanager.url})
    alertmanager.stop()
    write(migrated_db, delivery, transition("firing", now()))
    sender = sender_for(delivery)
    with caplog.at_level(logging.WARNING, "rttm.alerts.sender"):
        sender.run_once()
        sender.run_once()  # within the backoff: no second call, no second log line
    [(_, _, status, attempts, has_error)] = outbox_rows(migrated_db)
    assert (status, attempts, has_error) == ("due", 1, True)
    outage = [r.getMessage() for r in caplog.records]
    assert len(outage) == 1, outage
    assert "unavailable" in outage[0]

    alertmanager.start()

    def delivered() -> bool:
        sender.run_once()
        return bool(outbox_rows(migrated_db)[0][2] == "delivered")

    wait_for(delivered, timeout=15)
    assert [a["labels"]["alertname"] for a in alertmanager.alerts()] == ["TradeStuck"]


def test_an_ha_pair_of_alertmanagers_both_receive_every_alert(
    migrated_db: str,
    alertmanager: Alertmanager,
    tmp_path: Any,
    webhook: WebhookServer,
    sender_for: Any,
) -> None:
    (tmp_path / "second").mkdir()
    second = Alertmanager(tmp_path / "second", webhook.url)
    second.start()
    try:
        delivery = from_env({"RTTM_ALERTMANAGER_URL": f"{alertmanager.url}, {second.url}"})
        write(migrated_db, delivery, transition("firing", now()))
        sender_for(delivery).run_once()
        for manager in (alertmanager, second):
            assert [a["labels"]["alertname"] for a in manager.alerts()] == ["TradeStuck"]
        assert [row[2] for row in outbox_rows(migrated_db)] == ["delivered", "delivered"]
    finally:
        second.stop()


def test_the_webhook_gets_version_4_payloads_signed_with_the_secret(
    migrated_db: str, webhook: WebhookServer, sender_for: Any
) -> None:
    secret = "s3cret"  # noqa: S105 - the test's own
    delivery = from_env(
        {
            "RTTM_ALERT_WEBHOOK_URL": webhook.url,
            "RTTM_ALERT_WEBHOOK_SECRET": secret,
            "RTTM_DASHBOARD_URL": DASHBOARD,
        }
    )
    sender = sender_for(delivery)
    started = now() - timedelta(seconds=30)
    write(migrated_db, delivery, transition("firing", started))
    assert sender.run_once()
    write(migrated_db, delivery, transition("resolved", now(), started))
    assert sender.run_once()

    assert len(webhook.received) == 2
    for request in webhook.received:
        expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers[SIGNATURE_HEADER.lower()] == expected
    firing, resolved = webhook.payloads()
    assert firing["version"] == "4"
    assert firing["status"] == "firing"
    assert resolved["status"] == "resolved"
    assert firing["groupLabels"] == {"alertname": "TradeStuck"}
    assert firing["commonLabels"]["source"] == "rttm"
    assert firing["externalURL"] == DASHBOARD
    assert {"receiver", "groupKey", "truncatedAlerts", "commonAnnotations"} <= firing.keys()
    [alert] = firing["alerts"]
    assert alert["status"] == "firing"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["fingerprint"] == fingerprint(alert["labels"])
    assert resolved["alerts"][0]["status"] == "resolved"


def test_a_receiver_that_refuses_is_reported_once_and_not_retried(
    migrated_db: str, webhook: WebhookServer, sender_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.status = 400
    delivery = from_env({"RTTM_ALERT_WEBHOOK_URL": webhook.url})
    write(migrated_db, delivery, transition("firing", now()))
    sender = sender_for(delivery)
    with caplog.at_level(logging.ERROR, "rttm.alerts.sender"):
        for _ in range(3):
            sender.run_once()
    assert len(webhook.received) == 1
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute(
            "SELECT status, attempts, last_error FROM rttm_alert_outbox"
        ).fetchall() == [("refused", 1, "HTTP 400: bad payload")]
    [report] = [r.getMessage() for r in caplog.records]
    assert "refused 1 alert(s) (TradeStuck): HTTP 400: bad payload" in report


def test_a_replayed_day_of_history_is_stored_but_sent_to_nobody(
    migrated_db: str, alertmanager: Alertmanager, webhook: WebhookServer, sender_for: Any
) -> None:
    delivery = from_env(
        {"RTTM_ALERTMANAGER_URL": alertmanager.url, "RTTM_ALERT_WEBHOOK_URL": webhook.url}
    )
    day_ago = now() - timedelta(days=1)
    day: list[Transition] = []
    for hour in range(24):  # a stuck trade each hour of yesterday, cleared five minutes later
        started = day_ago + timedelta(hours=hour)
        day += [
            transition("firing", started),
            transition("resolved", started + timedelta(minutes=5), started),
        ]
    write(migrated_db, delivery, *day)
    sender = sender_for(delivery)
    assert sender.run_once()
    rows = outbox_rows(migrated_db)
    assert len(rows) == 24 * 2 * 2  # every transition, for each receiver
    assert {row[2] for row in rows} == {"history"}
    assert alertmanager.alerts() == []
    assert webhook.received == []


def advisory_locks(url: str) -> int:
    """Advisory locks held in the database at ``url``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("threaded", [False, True], ids=["rounds-by-hand", "its-thread"])
def test_one_sender_per_database_works_at_a_time_and_a_stop_hands_over_at_once(
    migrated_db: str, webhook: WebhookServer, sender_for: Any, threaded: bool
) -> None:
    delivery = from_env({"RTTM_ALERT_WEBHOOK_URL": webhook.url})
    first, second = sender_for(delivery), sender_for(delivery)
    if threaded:
        first.start()  # as the metrics flow runs it
        wait_for(lambda: advisory_locks(migrated_db) == 1)  # its thread leads
        assert not second.run_once()
    else:
        assert first.run_once()
        assert not second.run_once()
    first.stop(timeout=5)  # unlocks, then closes: the standby's next round leads
    assert second.run_once()


def test_a_replay_of_a_transition_queues_nothing_new(
    migrated_db: str, webhook: WebhookServer, sender_for: Any
) -> None:
    delivery = from_env({"RTTM_ALERT_WEBHOOK_URL": webhook.url})
    sender = sender_for(delivery)
    firing = transition("firing", now())
    write(migrated_db, delivery, firing)
    assert sender.run_once()
    write(migrated_db, delivery, firing)  # the flow replays the window after a crash
    assert sender.run_once()
    assert len(webhook.received) == 1
    assert [row[2] for row in outbox_rows(migrated_db)] == ["delivered"]


def add_window(url: str, start: datetime) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO rttm_metrics (metric, window_start, labels, window_end, value)"
            " VALUES ('events', %s, '{}', %s, 1)",
            (start, start + timedelta(seconds=10)),
        )


def test_firing_alerts_are_resent_while_the_flow_is_live_and_not_while_it_catches_up(
    migrated_db: str, alertmanager: Alertmanager, sender_for: Any
) -> None:
    delivery = from_env({"RTTM_ALERTMANAGER_URL": alertmanager.url, "RTTM_ALERT_RESEND": "1s"})
    started = now() - timedelta(hours=2)  # fired long ago, still firing: a history row
    write(migrated_db, delivery, transition("firing", started))
    add_window(migrated_db, now() - timedelta(hours=1))  # the flow is an hour behind
    sender = sender_for(delivery)
    assert sender.run_once()
    assert alertmanager.alerts() == []

    add_window(migrated_db, now() - timedelta(seconds=10))  # caught up with the present
    wait_for(lambda: sender.run_once() and alertmanager.alerts(), timeout=5)
    [first] = alertmanager.alerts()
    assert datetime.fromisoformat(first["startsAt"]) == started
    assert [row[2] for row in outbox_rows(migrated_db)] == ["delivered"]

    def extended() -> bool:
        sender.run_once()
        [again] = alertmanager.alerts()
        return datetime.fromisoformat(again["endsAt"]) > datetime.fromisoformat(first["endsAt"])

    wait_for(extended, timeout=5)


def rttm(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RTTM_")}
    return subprocess.run(
        [sys.executable, "-m", "rttm", *args],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_silence_made_with_rttm_is_listed_by_alertmanager_and_shown_by_rttm_alerts(
    migrated_db: str, alertmanager: Alertmanager, sender_for: Any
) -> None:
    delivery = from_env({"RTTM_ALERTMANAGER_URL": alertmanager.url})
    write(migrated_db, delivery, transition("firing", now()))
    assert sender_for(delivery).run_once()

    made = rttm(
        "alerts",
        "silence",
        "TradeStuck",
        "stage=positioned",
        "--for",
        "2h",
        "--comment",
        "fix being deployed",
        "--author",
        "ops@example",
        RTTM_ALERTMANAGER_URL=alertmanager.url,
    )
    assert made.returncode == 0, made.stderr
    silence_id = made.stdout.strip()
    assert f"silenced TradeStuck for 2h in alertmanager {alertmanager.url}" in made.stderr
    [silence] = alertmanager.silences()
    assert silence["id"] == silence_id
    assert silence["status"]["state"] == "active"
    assert (silence["comment"], silence["createdBy"]) == ("fix being deployed", "ops@example")
    assert sorted((m["name"], m["value"], m["isEqual"]) for m in silence["matchers"]) == [
        ("alertname", "TradeStuck", True),
        ("source", "rttm", True),
        ("stage", "positioned", True),
    ]
    lasts = datetime.fromisoformat(silence["endsAt"]) - datetime.now(UTC)
    assert timedelta(hours=2) - timedelta(seconds=30) < lasts <= timedelta(hours=2)
    [held] = alertmanager.alerts()
    assert held["status"]["state"] == "suppressed"
    assert held["status"]["silencedBy"] == [silence_id]

    shown = rttm(
        "alerts", "--json", RTTM_DATABASE_URL=migrated_db, RTTM_ALERTMANAGER_URL=alertmanager.url
    )
    assert shown.returncode == 0, shown.stderr
    [firing] = json.loads(shown.stdout)["firing"]
    assert (firing["delivery"], firing["silenced_by"]) == ("delivered", [silence_id])
    table = rttm("alerts", RTTM_DATABASE_URL=migrated_db, RTTM_ALERTMANAGER_URL=alertmanager.url)
    assert silence_id in table.stdout
    assert "delivered" in table.stdout


OPTIONS = ("--comment", "c", "--for", "1h")


@pytest.mark.parametrize(
    ("env", "args", "error"),
    [
        ({}, (), "rttm: error: no Alertmanager to silence in: set RTTM_ALERTMANAGER_URL"),
        (
            {"RTTM_ALERTMANAGER_URL": "localhost:9093"},
            (),
            "rttm: error: RTTM_ALERTMANAGER_URL: 'localhost:9093' is not a URL: write it as"
            " http://HOST:PORT",
        ),
        (
            {"RTTM_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}"},
            (),
            "rttm: error: cannot reach any Alertmanager: alertmanager http://127.0.0.1:",
        ),
        ({}, ("stage", *OPTIONS), "argument LABEL=VALUE: expected LABEL=VALUE"),
        ({}, ("--comment", "c", "--for", "soon"), "argument --for: invalid duration 'soon'"),
    ],
)
def test_silence_mistakes_fail_in_one_line(
    env: dict[str, str], args: tuple[str, ...], error: str
) -> None:
    result = rttm("alerts", "silence", "TradeStuck", *(args or OPTIONS), **env)
    assert result.returncode != 0
    assert error in result.stderr.strip().splitlines()[-1]


def test_starts_at_is_when_the_alert_turned_firing_as_prometheus_sends_it(
    migrated_db: str, alertmanager: Alertmanager, sender_for: Any
) -> None:
    delivery = from_env({"RTTM_ALERTMANAGER_URL": alertmanager.url})
    pending_since = now() - timedelta(minutes=2)
    fired = pending_since + timedelta(minutes=1)
    write(
        migrated_db,
        delivery,
        transition("pending", pending_since),
        transition("firing", fired, pending_since),
    )
    assert sender_for(delivery).run_once()
    [held] = alertmanager.alerts()
    assert datetime.fromisoformat(held["startsAt"]) == fired


def test_one_bad_alert_is_refused_alone_and_never_resent_while_the_rest_go_through(
    migrated_db: str, alertmanager: Alertmanager, sender_for: Any
) -> None:
    delivery = from_env({"RTTM_ALERTMANAGER_URL": alertmanager.url, "RTTM_ALERT_RESEND": "1s"})
    bad = transition("firing", now(), labels=(("bad-name", "x"),))  # not a Prometheus label name
    write(migrated_db, delivery, transition("firing", now()), bad)
    add_window(migrated_db, now() - timedelta(seconds=10))
    sender = sender_for(delivery)
    assert sender.run_once()
    with psycopg.connect(migrated_db) as conn:
        outcome = conn.execute(
            "SELECT labels->>'bad-name', status, last_error LIKE 'HTTP 400: %%'"
            " FROM rttm_alert_outbox ORDER BY id"
        ).fetchall()
    assert outcome == [(None, "delivered", None), ("x", "refused", True)]
    assert [a["labels"]["stage"] for a in alertmanager.alerts()] == ["positioned"]
    delivered_at = "SELECT delivered_at FROM rttm_alert_outbox WHERE status = 'delivered'"
    with psycopg.connect(migrated_db) as conn:
        [(before,)] = conn.execute(delivered_at).fetchall()
    time.sleep(1.1)
    assert sender.run_once()  # a resend round: the valid alert again, the refused one not
    assert [row[2] for row in outbox_rows(migrated_db)] == ["delivered", "refused"]
    with psycopg.connect(migrated_db) as conn:
        [(after,)] = conn.execute(delivered_at).fetchall()
    assert after > before


def test_resends_skip_rules_that_are_gone_and_rows_of_removed_receivers_are_dropped(
    migrated_db: str,
    alertmanager: Alertmanager,
    sender_for: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = from_env({"RTTM_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/gone"})
    write(migrated_db, old, transition("firing", now(), rule="Retired"))
    add_window(migrated_db, now() - timedelta(seconds=10))
    delivery = from_env({"RTTM_ALERTMANAGER_URL": alertmanager.url})
    with caplog.at_level(logging.WARNING, "rttm.alerts.sender"):
        assert sender_for(delivery).run_once()
    assert [r.getMessage() for r in caplog.records] == [
        "1 undelivered alert notifications dropped: their receivers are no longer configured"
    ]
    assert alertmanager.alerts() == []  # "Retired" is not a rule any more: it lapses
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT status, last_error FROM rttm_alert_outbox").fetchall() == [
            ("dropped", "its receiver is no longer configured")
        ]


def test_the_backoff_doubles_from_one_second_to_thirty_and_a_success_resets_it() -> None:
    receiver = from_env({"RTTM_ALERT_WEBHOOK_URL": "http://h/"}).receivers[0]
    backoff = sender_module._Backoff(receiver)
    assert backoff.ready()
    waits = []
    for _ in range(7):
        backoff.failed("down")
        waits.append(round(backoff.next_at - time.monotonic()))
    assert waits == [1, 2, 4, 8, 16, 30, 30]  # README: "backoff from 1 s up to 30 s"
    assert not backoff.ready()
    backoff.worked()
    assert backoff.ready()
    backoff.failed("down again")
    assert round(backoff.next_at - time.monotonic()) == 1


def test_the_thread_delivers_what_is_due_and_stop_ends_it_after_a_last_round(
    migrated_db: str, webhook: WebhookServer
) -> None:
    delivery = from_env({"RTTM_ALERT_WEBHOOK_URL": webhook.url})
    sender = Sender(migrated_db, delivery, [STUCK_RULE])
    sender.start()
    try:
        write(migrated_db, delivery, transition("firing", now() - timedelta(minutes=1)))
        sender.wake()
        wait_for(lambda: len(webhook.received) == 1, timeout=10)
        write(migrated_db, delivery, transition("resolved", now(), now() - timedelta(minutes=1)))
    finally:
        sender.stop(timeout=10)  # the last round sends the resolution written just before
    assert [p["status"] for p in webhook.payloads()] == ["firing", "resolved"]
    assert sender._thread is not None
    assert not sender._thread.is_alive()
    assert sender._conn is None  # closed: its session, and the advisory lock, are gone


def alerts_posted(server: WebhookServer) -> list[list[str]]:
    """The alertnames of each list posted to a stand-in Alertmanager."""
    return [[a["labels"]["alertname"] for a in r.json()] for r in server.received]


def test_alertmanager_gets_one_list_per_round_and_a_refused_list_alert_by_alert(
    migrated_db: str, webhook: WebhookServer, sender_for: Any
) -> None:
    # The webhook server stands in for Alertmanager, to count what it is sent.
    stand_in = from_env({"RTTM_ALERTMANAGER_URL": webhook.url.removesuffix("/hook")})
    sender = sender_for(stand_in)
    assert sender.run_once()
    assert webhook.received == []  # nothing due, no live window: nothing posted
    write(migrated_db, stand_in, transition("firing", now()), transition("firing", now(), rule="B"))
    assert sender.run_once()
    assert [r.path for r in webhook.received] == ["/api/v2/alerts"]
    assert alerts_posted(webhook) == [["TradeStuck", "B"]]  # in the order they were queued

    webhook.received.clear()
    webhook.statuses = [400, 503]  # the list refused; then, alert by alert, an outage
    write(
        migrated_db,
        stand_in,
        transition("firing", now(), rule="C"),
        transition("firing", now(), rule="D"),
    )
    assert sender.run_once()
    assert alerts_posted(webhook) == [["C", "D"], ["C"]]  # stops at the failure
    with psycopg.connect(migrated_db) as conn:
        owed = conn.execute(
            "SELECT rule, status, attempts FROM rttm_alert_outbox"
            " WHERE rule IN ('C', 'D') ORDER BY rule"
        ).fetchall()
    assert owed == [("C", "due", 1), ("D", "due", 0)]


def test_the_webhook_waits_for_a_receiver_that_fails_and_sends_only_the_latest_state(
    migrated_db: str, webhook: WebhookServer, sender_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    delivery = from_env({"RTTM_ALERT_WEBHOOK_URL": webhook.url})
    started = now() - timedelta(minutes=1)
    write(
        migrated_db,
        delivery,
        transition("firing", started),
        transition("firing", now(), rule="Other"),
    )
    webhook.status = 503
    sender = sender_for(delivery)
    with caplog.at_level(logging.WARNING, "rttm.alerts.sender"):
        assert sender.run_once()
        assert len(webhook.received) == 1  # one payload per rule: the second waits
        write(migrated_db, delivery, transition("resolved", now(), started))  # resolved meanwhile
        webhook.status = 200
        webhook.received.clear()
        wait_for(lambda: sender.run_once() and len(webhook.received) == 2, timeout=10)
    sent = {p["groupLabels"]["alertname"]: p["status"] for p in webhook.payloads()}
    assert sent == {"TradeStuck": "resolved", "Other": "firing"}
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute(
            "SELECT rule, state, status FROM rttm_alert_outbox ORDER BY id"
        ).fetchall()
    assert rows == [
        ("TradeStuck", "firing", "superseded"),
        ("Other", "firing", "delivered"),
        ("TradeStuck", "resolved", "delivered"),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert any("unavailable: HTTP 503" in m for m in messages), messages
    assert any(
        m.startswith(f"webhook http://127.0.0.1:{webhook.port}/… back after") for m in messages
    )


def test_a_database_outage_ends_rounds_quietly_and_delivery_resumes_when_it_is_back(
    own_postgres: Any, webhook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    state, port, servers = own_postgres
    url = migrated(servers[0].url())
    delivery = from_env({"RTTM_ALERT_WEBHOOK_URL": webhook.url})
    write(url, delivery, transition("firing", now()))
    sender = Sender(url, delivery, [STUCK_RULE])
    try:
        servers[0].stop()
        with caplog.at_level(logging.WARNING, "rttm.alerts.sender"):
            assert not sender.run_once()  # no exception: the round ends, the thread goes on
            assert not sender.run_once()
            servers.append(start_postgres(state, port, TEST_POSTGRES_SETTINGS))
            assert sender.run_once()
    finally:
        sender.stop(timeout=5)
    assert len(webhook.received) == 1
    lost, back = [r.getMessage() for r in caplog.records]
    assert lost.startswith("database (alert outbox) unavailable: ")
    assert back.startswith("database (alert outbox) back after ")


def test_resends_keep_to_their_interval(
    migrated_db: str, webhook: WebhookServer, sender_for: Any
) -> None:
    stand_in = from_env({"RTTM_ALERTMANAGER_URL": webhook.url.removesuffix("/hook")})
    write(migrated_db, stand_in, transition("firing", now()))
    add_window(migrated_db, now() - timedelta(seconds=10))
    sender = sender_for(stand_in)
    assert sender.run_once()  # the due notification, then the first resend round
    assert alerts_posted(webhook) == [["TradeStuck"], ["TradeStuck"]]
    assert sender.run_once()
    assert sender.run_once()
    assert len(webhook.received) == 2  # the next resend is a minute away


def test_resends_wait_out_the_backoff_of_an_alertmanager_that_is_away(
    migrated_db: str, webhook: WebhookServer, sender_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in = from_env(
        {"RTTM_ALERTMANAGER_URL": webhook.url.removesuffix("/hook"), "RTTM_ALERT_RESEND": "1s"}
    )
    write(migrated_db, stand_in, transition("firing", now() - timedelta(hours=1)))  # history
    add_window(migrated_db, now() - timedelta(seconds=10))
    webhook.status = 503
    sender = sender_for(stand_in)
    with caplog.at_level(logging.WARNING, "rttm.alerts.sender"):
        assert sender.run_once()  # resend: 503, back off 1 s
        time.sleep(1.1)
        assert sender.run_once()  # resend: 503, back off 2 s
        time.sleep(1.1)
        assert sender.run_once()  # a resend is due, but the backoff is not over: no call
        assert len(webhook.received) == 2
        webhook.status = 200
        wait_for(lambda: sender.run_once() and len(webhook.received) == 3, timeout=10)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # gone once, back once
    assert messages[1].startswith(f"alertmanager http://127.0.0.1:{webhook.port} back after")
