"""``python -m bytewax.run dataflows.metrics`` against a real broker and PostgreSQL.

The simulator writes a known run to the topics; the flow's tables must match it, survive a
replay unchanged, and come out the same after a kill -9 and a resume from recovery.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.recovery import init_db_dir
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from rttm.core.config import KafkaSettings
from rttm.core.contracts import TradeEvent
from rttm.core.kafka_topics import partition_counts
from rttm.core.registry import ALERT_EVENTS_TOPIC
from rttm.simulator import scenario
from rttm.simulator.engine import Simulation
from support.kafka import produce
from support.simulated import kafka_messages
from tests.alerting import Alertmanager, WebhookServer
from tests.ingest_helpers import REPO, create_topics, flow_env, migrated
from tests.metrics_helpers import metrics_rows, run_metrics, simulate

pytestmark = pytest.mark.integration


def table(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def alert_events(kafka: KafkaSettings) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": kafka.brokers, "group.id": "metrics-test"})
    count = partition_counts(kafka)[ALERT_EVENTS_TOPIC]
    consumer.assign([TopicPartition(ALERT_EVENTS_TOPIC, p, OFFSET_BEGINNING) for p in range(count)])
    found: list[dict[str, Any]] = []
    idle_until = time.monotonic() + 10
    while time.monotonic() < idle_until:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        found.append(json.loads(message.value() or b"{}"))
        idle_until = time.monotonic() + 2
    consumer.close()
    return found


def test_metrics_flow_matches_the_simulation_and_a_replay_changes_nothing(
    kafka: KafkaSettings, migrated_db: str, alertmanager: Alertmanager, webhook: WebhookServer
) -> None:
    create_topics(kafka)
    events = simulate(kafka, seconds=90, rate=30)
    # Receivers are configured, but the run is history (March 2026): nobody is paged.
    env = flow_env(
        kafka,
        migrated_db,
        RTTM_ALERTMANAGER_URL=alertmanager.url,
        RTTM_ALERT_WEBHOOK_URL=webhook.url,
    )

    first = run_metrics(env)
    assert first.returncode == 0, first.stderr[-3000:]
    truth = Counter(
        (
            datetime.fromtimestamp(int(e.event_time.timestamp() // 10 * 10), UTC),
            e.service_name,
            e.event_type,
        )
        for e in events
        if isinstance(e, TradeEvent)
    )
    counted = table(
        migrated_db,
        "SELECT window_start, labels->>'service', labels->>'event_type',"
        " value FROM rttm_metrics WHERE metric = 'events'",
    )
    assert {(w, s, t): v for w, s, t, v in counted} == dict(truth)

    stuck = table(migrated_db, "SELECT stage, service_name FROM rttm_stuck_trades")
    assert stuck  # the default scenario stops 0.1 % of trades after pms-core
    assert set(stuck) == {("positioned", "pms-core")}
    firing = table(migrated_db, "SELECT DISTINCT rule FROM rttm_alerts WHERE state = 'firing'")
    assert ("TradeStuck",) in firing
    published = alert_events(kafka)
    stored = table(migrated_db, "SELECT rule, state FROM rttm_alerts")
    assert sorted((e["rule"], e["state"]) for e in published) == sorted(stored)
    owed = table(migrated_db, "SELECT receiver, rule, state, status FROM rttm_alert_outbox")
    notifying = [(rule, state) for rule, state in stored if state in ("firing", "resolved")]
    assert sorted((rule, state) for _, rule, state, _ in owed) == sorted(notifying * 2)
    assert {status for *_, status in owed} == {"history"}
    assert alertmanager.alerts() == []
    assert webhook.received == []

    before = metrics_rows(migrated_db)
    again = run_metrics(env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics_rows(migrated_db) == before
    assert len(table(migrated_db, "SELECT 1 FROM rttm_alerts")) == len(stored)


def test_kill_9_then_resume_from_recovery_equals_an_uninterrupted_run(
    kafka: KafkaSettings, migrated_db: str, new_database: Any, tmp_path: Path
) -> None:
    create_topics(kafka)
    simulate(kafka, seconds=600, rate=60)
    reference = migrated(new_database())
    whole = run_metrics(flow_env(kafka, reference))
    assert whole.returncode == 0, whole.stderr[-3000:]

    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)  # type: ignore[no-untyped-call]
    args = ("-r", str(recovery), "-s", "1", "-b", "0")
    process = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "dataflows.metrics", *args],
        env=flow_env(kafka, migrated_db),
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = False
    while process.poll() is None:
        if table(migrated_db, "SELECT count(*) FROM rttm_metrics")[0][0] > 0:
            time.sleep(0.3)
            process.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    process.communicate(timeout=60)
    assert killed, "the run ended before it could be killed: make the workload larger"
    resumed = run_metrics(flow_env(kafka, migrated_db), *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics_rows(migrated_db) == metrics_rows(reference)
    query = (
        "SELECT trade_id, last_event_time, detected_at, recovered_at"
        " FROM rttm_stuck_trades ORDER BY 1, 2"
    )
    assert table(migrated_db, query) == table(reference, query)
    alerts = "SELECT rule, labels::text, started_at, state FROM rttm_alerts ORDER BY 1, 2, 3, 4"
    assert table(migrated_db, alerts) == table(reference, alerts)


def test_bad_pipeline_file_fails_fast_with_its_name(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    bad = tmp_path / "pipeline.toml"
    bad.write_text('[[stages]]\nname = "a"\nservice = "s"\nsuccess = []\n')
    result = run_metrics(flow_env(kafka, migrated_db, RTTM_PIPELINE=str(bad)))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rttm: error: {bad}: "), last


def test_when_the_platform_goes_silent_windows_still_close_and_the_silence_alerts(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    create_topics(kafka)
    start = datetime.now(UTC) - timedelta(seconds=6)
    timeline = list(Simulation(scenario.load(), seed=2, start=start, rate=20, duration=3).events())
    produce(kafka.brokers, kafka_messages(event for _, event in timeline))
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "Silence"\nmetric = "trades_started"\nop = "=="\n'
        'threshold = 0\nfor = "2s"\nseverity = "critical"\n'
    )
    env = flow_env(
        kafka,
        migrated_db,
        RTTM_TAIL="1",
        RTTM_METRICS_WINDOW="1s",
        RTTM_METRICS_LATENESS="1s",
        RTTM_ALERT_RULES=str(rules),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "dataflows.metrics"],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        firing: list[tuple[Any, ...]] = []
        while not firing and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            firing = table(
                migrated_db,
                "SELECT at FROM rttm_alerts WHERE rule = 'Silence' AND state = 'firing'",
            )
        assert firing, "no alert while the platform was silent"
        last_event = start + timedelta(seconds=max(at for at, _ in timeline))
        assert firing[0][0] > last_event  # raised on windows after the last event
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
