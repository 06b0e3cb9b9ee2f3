"""Metrics converge to the stored truth: late events, repeats, the horizon, a kill -9.

Both flows run against a real broker and PostgreSQL. Producers publish a window's events
late (after newer ones, on the same partitions, as a retry would) and publish some twice;
``rttm metrics verify`` then recounts the settled windows from the tables.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.recovery import init_db_dir

from rttm.core.config import KafkaSettings
from rttm.core.contracts import DlqEvent, ErrorEvent, LogEvent, Message, TradeEvent
from rttm.core.db import prepare
from rttm.metrics.merge import CORRECTED
from support.kafka import produce
from support.simulated import kafka_messages
from tests.ingest_helpers import REPO, create_topics, flow_env, ingest
from tests.metrics_helpers import run_metrics as metrics_flow

pytestmark = pytest.mark.integration
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # history: nobody is paged
#: A short horizon, so that a test's windows settle after a few minutes of event time.
HORIZON = {"RTTM_METRICS_CORRECTION": "60s"}


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def platform(prefix: str, start: float, seconds: float, every: float = 0.25) -> list[Message]:
    """Trades created every ``every`` s and completed 0.3 s later; DLQ, error and log events."""
    out: list[Message] = []
    for n in range(int(seconds / every)):
        t, trade = start + n * every, f"{prefix}{n}"
        out += [
            TradeEvent(
                event_id=f"{trade}-c",
                trade_id=trade,
                service_name="simulation-service",
                event_type="TRADE_CREATED",
                event_status="SUCCESS",
                event_time=at(t),
            ),
            TradeEvent(
                event_id=f"{trade}-l",
                trade_id=trade,
                service_name="leaderboard-service",
                event_type="LEADERBOARD_UPDATED",
                event_status="SUCCESS",
                event_time=at(t + 0.3),
            ),
        ]
        if n % 5 == 0:
            out += [
                DlqEvent(
                    event_id=f"{trade}-d",
                    trade_id=trade,
                    service_name="pms-core",
                    topic_name="positions.dlq",
                    reason=f"bad price {n}",
                    event_time=at(t),
                ),
                ErrorEvent(
                    event_id=f"{trade}-e",
                    trade_id=trade,
                    service_name="pms-core",
                    error_type="Timeout",
                    error_message="slow",
                    event_time=at(t),
                ),
            ]
        if n % 3 == 0:
            warning = LogEvent(
                event_id=f"{trade}-w",
                service_name="pms-core",
                log_level="WARN",
                log_category="db",
                message="retrying",
                event_time=at(t),
            )
            out.append(warning)
    return out


def publish(kafka: KafkaSettings, url: str, events: list[Message]) -> None:
    """Publish ``events`` and ingest them (the ingestion flow, until caught up)."""
    produce(kafka.brokers, kafka_messages(events))
    ingest(kafka, url)


def run_metrics(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = metrics_flow(env, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rttm", "metrics", "verify", "--since", "1d"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def recovery(tmp_path: Path) -> tuple[str, ...]:
    directory = tmp_path / "recovery"
    directory.mkdir()
    init_db_dir(directory, 1)  # type: ignore[no-untyped-call]
    return ("-r", str(directory), "-s", "1", "-b", "0")


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def metric_total(url: str, metric: str) -> float:
    rows = query(url, "SELECT coalesce(sum(value), 0) FROM rttm_metrics WHERE metric = %s", metric)
    return float(rows[0][0])


def stored_events(url: str, start: datetime) -> dict[tuple[str, str], float]:
    rows = query(
        url,
        "SELECT labels->>'service', labels->>'event_type', value FROM rttm_metrics"
        " WHERE metric = 'events' AND window_start = %s",
        start,
    )
    return {(service, kind): value for service, kind, value in rows}


def counted_events(url: str, start: datetime) -> dict[tuple[str, str], float]:
    rows = query(
        url,
        "SELECT service_name, event_type, count(*) FROM rttm_trade_events"
        " WHERE event_time >= %s AND event_time < %s GROUP BY 1, 2",
        start,
        start + timedelta(seconds=10),
    )
    return {(service, kind): float(count) for service, kind, count in rows}


def test_late_and_repeated_events_converge_to_the_tables_and_verify_finds_a_planted_error(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    create_topics(kafka)
    env = flow_env(kafka, migrated_db, **HORIZON)
    args = recovery(tmp_path)
    first = platform("A", 0.0, 40.0)
    publish(kafka, migrated_db, first)
    run_metrics(env, *args)
    before = stored_events(migrated_db, at(0))
    assert before == counted_events(migrated_db, at(0))

    # The watermark has passed: then window [0, 10) and [10, 20) get more, on the same
    # partitions (the same keys), and a tenth of the first part is delivered again.
    late = platform("L", 2.0, 15.0, every=0.5)
    repeats = first[::10]
    publish(kafka, migrated_db, [*late, *repeats])
    run_metrics(env, *args)
    publish(kafka, migrated_db, platform("Z", 200.0, 20.0))  # event time moves on: settled
    run_metrics(env, *args)
    # Counted where they arrived: in the oldest window open then, closed by the last run.
    assert metric_total(migrated_db, "corrected_events") == len(late)
    assert metric_total(migrated_db, "repeated_events") == len(repeats)
    assert metric_total(migrated_db, "late_events") == 0

    after = stored_events(migrated_db, at(0))
    assert after == counted_events(migrated_db, at(0))
    assert after != before  # the window was corrected
    clean = verify(env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 differences" in clean.stdout

    with psycopg.connect(migrated_db) as conn:
        conn.execute(
            "UPDATE rttm_metrics SET value = value + 1 WHERE ctid = (SELECT ctid FROM rttm_metrics"
            " WHERE metric = 'errors' AND window_start = %s LIMIT 1)",
            (at(10),),
        )
    planted = verify(env)
    assert planted.returncode == 1, planted.stdout + planted.stderr
    assert "errors" in planted.stdout
    assert "1 difference" in planted.stdout


def test_events_past_the_horizon_are_late_leave_the_window_alone_and_verify_leaves_them_out(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    create_topics(kafka)
    env = flow_env(kafka, migrated_db, **HORIZON)
    args = recovery(tmp_path)
    publish(kafka, migrated_db, platform("A", 0.0, 200.0, every=0.5))
    run_metrics(env, *args)
    before = stored_events(migrated_db, at(0))

    late = platform("L", 2.0, 5.0, every=0.5)  # 190 s after their window: past 60 s
    publish(kafka, migrated_db, [*late, *platform("Z", 300.0, 10.0)])  # then time moves on
    run_metrics(env, *args)
    assert stored_events(migrated_db, at(0)) == before
    assert stored_events(migrated_db, at(0)) != counted_events(migrated_db, at(0))
    assert metric_total(migrated_db, "late_events") == len(late)
    assert metric_total(migrated_db, "corrected_events") == 0
    noted = query(migrated_db, "SELECT reason, count(*) FROM rttm_metrics_uncounted GROUP BY 1")
    assert noted == [("late", len(late))]
    result = verify(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 differences" in result.stdout


def _corrected_rows(url: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT metric, window_start, labels::text, value FROM rttm_metrics"
        " WHERE metric = ANY(%s) ORDER BY 1, 2, 3",
        sorted(CORRECTED),
    )


def test_kill_9_while_corrections_are_in_flight_then_resume_lands_them_once(
    kafka: KafkaSettings, migrated_db: str, new_database: Any, tmp_path: Path
) -> None:
    create_topics(kafka)
    # A longer horizon: a following flow closes windows with the wall clock while idle.
    horizon = {"RTTM_METRICS_CORRECTION": "120s"}
    first, late, later = platform("A", 0, 30), platform("L", 1, 10), platform("Z", 400, 10)
    args = recovery(tmp_path)
    following = flow_env(kafka, migrated_db, RTTM_TAIL="1", **horizon)
    process = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "dataflows.metrics", *args],
        env=following,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        publish(kafka, migrated_db, first)
        deadline = time.monotonic() + 60
        while not query(migrated_db, "SELECT 1 FROM rttm_metrics WHERE window_start >= %s", at(20)):
            assert time.monotonic() < deadline, "the flow finalized no window in 60 s"
            time.sleep(0.2)
        for part in range(6):  # late events in bursts; the flow corrects as they come
            produce(kafka.brokers, kafka_messages(late[part::6]))
            time.sleep(0.3)
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    ingest(kafka, migrated_db)
    publish(kafka, migrated_db, later)
    run_metrics(flow_env(kafka, migrated_db, **horizon), *args)  # resume, until caught up

    reference = new_database()
    with psycopg.connect(reference, autocommit=True) as conn:
        prepare(conn)
    ingest(kafka, reference)
    run_metrics(flow_env(kafka, reference, **horizon))  # every event at once, no kill
    assert _corrected_rows(migrated_db) == _corrected_rows(reference)
    assert counted_events(migrated_db, at(0)) == stored_events(migrated_db, at(0))
    result = verify(flow_env(kafka, migrated_db, **horizon))
    assert result.returncode == 0, result.stdout + result.stderr
