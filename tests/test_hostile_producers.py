"""The three producer bugs of issue 17, scaled to seconds, through the real broker, both
flows, PostgreSQL and the API.

One buggy release puts a new id into every queue-metrics snapshot's service, topic and
partition and into every DLQ reason; another creates trades that never complete; a third
sends thousands of 5 KB events on one trade. The caps are set low so that a few thousand
messages cross them; the floods are the benchmark harness's own (``support.floods``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from rttm.core.config import KafkaSettings
from rttm.core.contracts import Message
from rttm.metrics.limits import OTHER
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from rttm.views import trace as trace_view
from rttm.web.app import create_app
from support.floods import HOT, hot_trade, series_flood, trade_flood
from support.kafka import produce
from support.simulated import kafka_messages
from tests.ingest_helpers import create_topics, flow_env, ingest
from tests.metrics_helpers import run_metrics
from tests.servers import migrated_database

pytestmark = pytest.mark.integration

PARTITIONS, REASONS, TRADES, HOT_EVENTS = 3_000, 1_000, 3_000, 1_500
CAPS = {
    "RTTM_METRICS_MAX_SERIES": "200",
    "RTTM_METRICS_MAX_DLQ_REASONS": "5",
    "RTTM_ALERTS_MAX_PER_RULE": "10",
    "RTTM_METRICS_MAX_TRADES": "1000",
    "RTTM_METRICS_MAX_PARTITIONS": "2000",  # the newest 2 minutes of the 3-minute flood
}


def floods(start: datetime) -> Iterator[Message]:
    yield from series_flood(PARTITIONS, REASONS, start)
    yield from trade_flood(TRADES, start)
    yield from hot_trade(HOT_EVENTS, start)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def flooded(postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database that both flows filled from the three floods (made once for the module)."""
    broker = start_broker(tmp_path_factory.mktemp("broker"), free_port())
    try:
        with migrated_database(postgres_admin_url, "rttm_hostile") as url:
            kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
            create_topics(kafka)
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
            produce(kafka.brokers, kafka_messages(list(floods(start))))
            ingest(kafka, url)
            done = run_metrics(flow_env(kafka, url, **CAPS))
            assert done.returncode == 0, done.stderr[-3000:]
            yield url
    finally:
        broker.stop()


def test_series_per_metric_per_window_are_capped_and_the_rest_folded(flooded: str) -> None:
    widest = query(
        flooded,
        "SELECT metric, window_start, count(*) FROM rttm_metrics"
        " GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1",
    )
    assert widest[0][2] <= 200 + 1  # the cap, and the __other__ point
    other = query(
        flooded,
        "SELECT count(*) FROM rttm_metrics WHERE metric = 'queue_lag'"
        f" AND labels->>'service' = '{OTHER}'",
    )
    assert other[0][0] > 0
    exceeded = query(
        flooded,
        "SELECT DISTINCT labels->>'metric', labels->>'label' FROM rttm_metrics"
        " WHERE metric = 'cardinality_exceeded'",
    )
    # service and topic both have a value per snapshot; the tie goes to the first name.
    assert ("queue_lag", "service") in exceeded


def test_the_cardinality_alert_fires_and_alerts_per_rule_are_capped(flooded: str) -> None:
    fired = query(
        flooded,
        "SELECT DISTINCT labels->>'metric' FROM rttm_alerts"
        " WHERE rule = 'CardinalityExceeded' AND state = 'firing'",
    )
    assert ("queue_lag",) in fired
    # Every firing alert of a rule started in the same few windows: at most the cap at once.
    active = query(
        flooded,
        "SELECT rule, count(*) FROM (SELECT DISTINCT ON (rule, labels)"
        " rule, state FROM rttm_alerts ORDER BY rule, labels, at DESC) l"
        " WHERE state IN ('pending', 'firing') GROUP BY 1",
    )
    assert all(count <= 10 for _, count in active), active
    # Hundreds of partitions stopped reporting (STOP, pending until the run ends): beyond
    # the cap they are watched as one alert.
    stopped = query(
        flooded,
        "SELECT labels->>'service' FROM (SELECT DISTINCT ON (labels) labels, state"
        " FROM rttm_alerts WHERE rule = 'ConsumerStopped' ORDER BY labels, at DESC) l"
        " WHERE state IN ('pending', 'firing')",
    )
    assert len(stopped) == 10
    assert (OTHER,) in stopped


def test_dlq_reasons_are_grouped_in_the_metrics_and_exact_in_the_rows(flooded: str) -> None:
    reasons = {
        r
        for (r,) in query(
            flooded,
            "SELECT DISTINCT labels->>'reason' FROM rttm_metrics WHERE metric = 'dlq_events'",
        )
    }
    assert len(reasons) <= 5 + 1
    stored = query(flooded, "SELECT count(DISTINCT reason), count(*) FROM rttm_dlq_events")
    assert stored == [(REASONS, REASONS)]
    depth = query(flooded, "SELECT max(value) FROM rttm_metrics WHERE metric = 'dlq_depth'")
    assert depth == [(REASONS,)]


def test_trades_beyond_the_cap_are_counted_and_stay_findable(flooded: str) -> None:
    untracked = query(
        flooded,
        "SELECT coalesce(sum(value), 0) FROM rttm_metrics WHERE metric = 'trades_untracked'",
    )[0][0]
    stuck = query(flooded, "SELECT count(*) FROM rttm_stuck_trades WHERE trade_id LIKE 'N%'")[0][0]
    assert untracked > 0
    assert stuck + untracked == TRADES  # each trade is found stuck, or counted as untracked
    stored = query(
        flooded, "SELECT count(DISTINCT trade_id) FROM rttm_trade_events WHERE trade_id LIKE 'N%'"
    )
    assert stored == [(TRADES,)]
    partitions = query(
        flooded,
        "SELECT coalesce(sum(value), 0) FROM rttm_metrics WHERE metric = 'partitions_untracked'",
    )[0][0]
    assert partitions > 0


def test_the_api_answers_bounded_and_stays_responsive_during_the_flood(flooded: str) -> None:
    client = TestClient(create_app(flooded))
    # A trace page: 500 events, each message cut to 2,000 characters (the flood's are 5,000).
    page = trace_view.DEFAULT_LIMIT * (trace_view.TEXT_CHARS + 500)
    for path, most in (
        ("/api/status", 400_000),
        ("/api/alerts", 200_000),
        ("/metrics", 600_000),
        (f"/api/trace/{HOT}", page),
    ):
        started = time.perf_counter()
        answer = client.get(path)
        took = time.perf_counter() - started
        assert answer.status_code == 200, (path, answer.text[:300])
        assert len(answer.content) < most, (path, len(answer.content))
        assert took < 5, (path, took)
    status = client.get("/api/status").json()
    assert status["trades"]["untracked"] > 0  # stuck detection says what it could not track
    assert status["omitted"]["consumers"] > 0
    trace = client.get(f"/api/trace/{HOT}").json()
    assert trace["total"] == HOT_EVENTS
    assert len(trace["events"]) == 500
    assert trace["next"]
    # Ten heavy requests at once: each answers whole, or "busy" at once; a normal request
    # still answers at once.
    answers: list[tuple[int, str]] = []

    def heavy_request() -> None:
        answer = client.get(f"/api/trace/{HOT}")
        answers.append((answer.status_code, answer.text[:200]))

    heavy = [threading.Thread(target=heavy_request) for _ in range(10)]
    for thread in heavy:
        thread.start()
    started = time.perf_counter()
    assert client.get("/healthz").status_code == 200
    assert time.perf_counter() - started < 2
    for thread in heavy:
        thread.join()
    assert len(answers) == 10
    assert all(code == 200 or (code == 503 and "busy" in text) for code, text in answers), answers
    assert any(code == 200 for code, _ in answers)
