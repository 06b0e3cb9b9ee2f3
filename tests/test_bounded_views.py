"""The views stay small and quick whatever the tables hold (issue 17, "bounded responses").

A buggy producer's flood — 20,000 queue partitions, 20,000 DLQ reasons, 20,000 active
alerts — is written once for the module with COPY; ``/api/status``, ``/api/alerts``,
``/metrics`` and the CLI must answer within a time and size bound, keep the worst entries
and count the rest. A request past its time budget answers 503 in one line while the
server keeps answering others.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect

from rttm.core.metric_catalogue import COUNTS
from rttm.stack.processes import free_port
from rttm.views.limits import ViewLimits
from rttm.web.app import create_app
from tests.servers import Run, migrated_database, rttm, serving

pytestmark = pytest.mark.integration

FLOOD = 20_000
WINDOWS = 3
WINDOW = timedelta(seconds=10)
NEWEST = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: Every thousandth consumer is stopped: the twenty worst, whatever their lag.
STOPPED = {i for i in range(FLOOD) if i % 1000 == 7}
#: Ten reasons with far more events than the rest.
LOUD_REASONS = 10
FIRING, PENDING = 15_000, 5_000
CRITICAL = {i for i in range(FIRING) if i % 1000 == 3}
STUCK = 250
#: Generous bounds for a shared 2-core machine (measured: see the report of issue 17).
ANSWER_S = 3.0
BODY_BYTES = 300_000
METRICS_BYTES = 1_500_000


def _metric_rows() -> Iterator[tuple[str, datetime, str, datetime, float]]:
    for w in range(WINDOWS):
        start = NEWEST - w * WINDOW
        end = start + WINDOW
        for i in range(FLOOD):
            part = json.dumps({"service": f"svc-{i}", "topic": f"topic-{i}", "partition": "0"})
            pair = json.dumps({"service": f"svc-{i}", "topic": f"topic-{i}"})
            yield "queue_lag", start, part, end, float(i)
            yield "queue_lag_seconds", start, part, end, i / 10
            yield "consume_rate", start, part, end, 5.0
            yield "consumer_status", start, pair, end, 3.0 if i in STOPPED else 0.0
            yield "time_to_data_loss_seconds", start, pair, end, 86_400.0 - i
            reason = json.dumps({"topic": "trade-dlq", "reason": f"reason {i:05d}"})
            yield "dlq_events", start, reason, end, 1000.0 + i if i < LOUD_REASONS else 1.0
        yield "tps", start, json.dumps({"service": "pms-core"}), end, 10.0


def _total_rows() -> Iterator[tuple[str, str, float]]:
    """``rttm_metrics_totals`` as the metrics sink leaves it: the counts' windows added up."""
    sums: dict[tuple[str, str], float] = {}
    for metric, _, labels, _, value in _metric_rows():
        if metric in COUNTS:
            sums[metric, labels] = sums.get((metric, labels), 0.0) + value
    for (metric, labels), value in sums.items():
        yield metric, labels, value


def _snapshot_rows() -> Iterator[tuple[Any, ...]]:
    """A queue-metrics snapshot per partition and window: partition i lags by i."""
    for w in range(WINDOWS):
        at = NEWEST - w * WINDOW
        for i in range(FLOOD):
            yield (
                f"svc-{i}",
                f"topic-{i}",
                0,
                10_000 + i,
                10_000,
                at,
                f"snap-{w}-{i}",
                0,
                w * FLOOD + i,
            )


def _alert_rows() -> Iterator[tuple[Any, ...]]:
    for i in range(FIRING + PENDING):
        state = "firing" if i < FIRING else "pending"
        severity = "critical" if i in CRITICAL else "warning"
        started = NEWEST - timedelta(seconds=i)
        yield (
            "QueueLagHigh",
            json.dumps({"partition": str(i)}),
            started,
            state,
            NEWEST,
            float(i),
            severity,
            f"lag of partition {i}",
        )


def _stuck_rows() -> Iterator[tuple[Any, ...]]:
    for i in range(STUCK):
        at = NEWEST - timedelta(seconds=i)
        yield f"T{i:06d}", at, "positioned", "pms-core", "POSITION_UPDATED", at


def _flood(url: str) -> None:
    copies = [
        ("rttm_metrics (metric, window_start, labels, window_end, value)", _metric_rows()),
        (
            "rttm_alerts (rule, labels, started_at, state, at, value, severity, summary)",
            _alert_rows(),
        ),
        (
            "rttm_stuck_trades (trade_id, last_event_time, stage, service_name, last_event_type,"
            " detected_at)",
            _stuck_rows(),
        ),
        ("rttm_metrics_totals (metric, labels, value)", _total_rows()),
        (
            "rttm_queue_metrics (service_name, topic_name, queue_partition, produced_offset,"
            " consumed_offset, snapshot_time, dedupe_key, kafka_partition, kafka_offset)",
            _snapshot_rows(),
        ),
    ]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table, rows in copies:
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


@pytest.fixture(scope="module")
def flooded(postgres_admin_url: str) -> Iterator[Run]:
    """A migrated database holding the flood; a CLI environment pointing at it."""
    with migrated_database(postgres_admin_url, "rttm_flood") as url:
        _flood(url)
        yield Run(url, {**os.environ, "RTTM_DATABASE_URL": url}, [])


def timed_get(client: TestClient, path: str) -> tuple[Any, float]:
    began = time.perf_counter()
    answer = client.get(path)
    return answer, time.perf_counter() - began


def test_status_of_a_flood_is_small_quick_and_keeps_the_worst(flooded: Run) -> None:
    client = TestClient(create_app(flooded.url))
    client.get("/api/status")  # warm: first connection, imports
    answer, took = timed_get(client, "/api/status")
    print(f"/api/status: {took:.3f} s, {len(answer.content):,} bytes")
    assert answer.status_code == 200, answer.text
    assert took < ANSWER_S
    assert len(answer.content) < BODY_BYTES
    data = answer.json()
    assert data["omitted"] == {
        "consumers": FLOOD - 100,
        "errors": 0,
        "logs": 0,
        "stuck": STUCK - 100,
    }
    consumers = data["consumers"]
    assert len(consumers) == 100
    stopped = sorted(STOPPED, reverse=True)
    assert [c["service"] for c in consumers[:20]] == [f"svc-{i}" for i in stopped]
    assert {c["status"] for c in consumers[:20]} == {"STOP"}
    assert [c["lag"] for c in consumers[20:]] == list(range(FLOOD - 1, FLOOD - 81, -1))
    assert consumers[0]["partitions"] == [
        {"partition": "0", "lag": stopped[0], "lag_seconds": stopped[0] / 10, "consume_rate": 5.0}
    ]
    assert consumers[0]["omitted"] == {"partitions": 0}
    dlq = data["dlq"]
    assert dlq["omitted"] == {"depth": 0, "by_reason": FLOOD - 100}
    loud = [f"reason {i:05d}" for i in reversed(range(LOUD_REASONS))]
    assert [r["reason"] for r in dlq["by_reason"][:LOUD_REASONS]] == loud
    assert dlq["by_reason"][LOUD_REASONS]["reason"] == f"reason {LOUD_REASONS:05d}"
    assert dlq["series"][-1]["value"] == sum(range(1000, 1000 + LOUD_REASONS)) + FLOOD - 10
    assert data["tps"]["omitted"] == {"by_service": 0}
    assert data["latency"]["omitted"] == {"hops": 0}
    alerts = data["alerts"]
    assert alerts["omitted"] == {"firing": FIRING - 100, "pending": PENDING - 100}
    oldest_critical_first = [str(i) for i in sorted(CRITICAL, reverse=True)]
    assert [
        a["labels"]["partition"] for a in alerts["firing"][: len(CRITICAL)]
    ] == oldest_critical_first
    assert [s["trade_id"] for s in data["stuck"][:3]] == ["T000000", "T000001", "T000002"]


def test_alerts_of_a_flood_are_small_and_counted(flooded: Run) -> None:
    client = TestClient(create_app(flooded.url))
    client.get("/api/alerts")
    answer, took = timed_get(client, "/api/alerts")
    print(f"/api/alerts: {took:.3f} s, {len(answer.content):,} bytes")
    assert answer.status_code == 200, answer.text
    assert took < ANSWER_S
    assert len(answer.content) < BODY_BYTES
    data = answer.json()
    assert (len(data["firing"]), len(data["pending"]), len(data["recent"])) == (100, 100, 50)
    assert data["omitted"] == {
        "firing": FIRING - 100,
        "pending": PENDING - 100,
        "recent": FIRING + PENDING - 50,
    }
    assert all(a["severity"] == "critical" for a in data["firing"][: len(CRITICAL)])


def test_metrics_of_a_flood_are_capped_per_metric(flooded: Run) -> None:
    client = TestClient(create_app(flooded.url))
    client.get("/metrics")
    answer, took = timed_get(client, "/metrics")
    print(f"/metrics: {took:.3f} s, {len(answer.content):,} bytes")
    assert answer.status_code == 200, answer.text
    assert took < ANSWER_S
    assert len(answer.content) < METRICS_BYTES
    body = answer.text
    lines = body.splitlines()
    assert sum(1 for line in lines if line.startswith("rttm_queue_lag{")) == 2000
    assert (
        f'rttm_queue_lag{{partition="0",service="svc-{FLOOD - 1}",topic="topic-{FLOOD - 1}"}}'
        in body
    )  # the most lag first
    for metric in ("queue_lag", "consumer_status", "dlq_events", "queue_offsets"):
        assert f'rttm_serve_series_omitted{{metric="{metric}"}} {FLOOD - 2000}.0' in lines
    # A counter: the three windows added up, the largest first.
    assert 'rttm_dlq_events_total{reason="reason 00009",topic="trade-dlq"} 3027.0' in lines
    offsets = [line for line in lines if line.startswith("rttm_queue_consumed_offset{")]
    assert len(offsets) == 2000
    assert offsets[0].startswith(
        f'rttm_queue_consumed_offset{{partition="0",service="svc-{FLOOD - 1}"'
    )
    # Time to data loss: the least is the most urgent, so the least are kept.
    loss = [line for line in lines if line.startswith("rttm_time_to_data_loss_seconds{")]
    assert len(loss) == 2000
    assert any(f'service="svc-{FLOOD - 1}"' in line for line in loss)
    assert not any('service="svc-0"' in line for line in loss)
    assert (
        'rttm_alerts_firing{rule="QueueLagHigh",severity="warning"} '
        f"{FIRING - len(CRITICAL)}.0" in lines
    )


def test_cli_says_how_many_it_left_out(flooded: Run) -> None:
    status = rttm(flooded, "status", "--max-entries", "5")
    assert status.returncode == 0, status.stderr
    consumers = status.stdout.split("\nconsumers\n")[1].split("\n\n")[0]
    assert consumers.splitlines()[-1] == f"  and {FLOOD - 5:,} more"
    assert f"  and {FIRING + PENDING - 10:,} more" in status.stdout  # alerts, both states
    alerts = rttm(flooded, "alerts", "--limit", "3")
    assert alerts.returncode == 0, alerts.stderr
    assert f"  and {FIRING + PENDING - 200:,} more\n" in alerts.stdout
    assert f"  and {FIRING + PENDING - 3:,} more\n" in alerts.stdout
    wrong = rttm(Run(flooded.url, {**flooded.env, "RTTM_VIEW_MAX_ENTRIES": "lots"}, []), "status")
    assert wrong.returncode == 1
    assert wrong.stderr == (
        "rttm: error: --max-entries / RTTM_VIEW_MAX_ENTRIES must be from 1 to 10000, got 'lots'\n"
    )


def test_serve_refuses_bad_limits_in_one_line(flooded: Run) -> None:
    option = rttm(flooded, "serve", "--max-entries", "0")
    assert option.returncode == 2
    assert option.stderr.splitlines()[-1].endswith(
        "argument --max-entries: must be from 1 to 10000, got 0"
    )
    budget = Run(flooded.url, {**flooded.env, "RTTM_VIEW_REQUEST_BUDGET": "0"}, [])
    answer = rttm(budget, "serve", "--port", str(free_port()))
    assert answer.returncode == 1
    assert answer.stderr == (
        "rttm: error: --request-budget / RTTM_VIEW_REQUEST_BUDGET must be from 0.001 to 600, "
        "got '0'\n"
    )


def test_a_request_past_its_budget_is_one_line_and_the_server_still_answers(
    migrated_db: str,
) -> None:
    client = TestClient(create_app(migrated_db, limits=ViewLimits(budget_s=0.001)))
    answer = client.get("/api/status")
    assert answer.status_code == 503
    assert answer.json() == {"detail": "status: not done within its time budget of 0.001 s"}
    assert client.get("/healthz").status_code == 200
    empty = TestClient(create_app(migrated_db)).get("/api/status").json()
    assert empty["as_of"] is None
    assert empty["omitted"] == {"consumers": 0, "errors": 0, "logs": 0, "stuck": 0}
    assert empty["alerts"] == {"firing": [], "pending": [], "omitted": {"firing": 0, "pending": 0}}


def fetch(url: str) -> tuple[int, Any]:
    """The status and body (JSON when it is) of GET ``url``, an error status included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - a test server
            status, body = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


@contextlib.contextmanager
def metrics_locked(url: str) -> Iterator[None]:
    """``rttm_metrics`` locked by another session: a status request waits on it."""
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE rttm_metrics IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def test_a_slow_request_neither_blocks_others_nor_outlives_its_budget(migrated_db: str) -> None:
    app = create_app(migrated_db, limits=ViewLimits(budget_s=1.5, concurrent=2))
    with serving(app) as base, metrics_locked(migrated_db):
        slow: list[tuple[int, Any]] = []
        began = time.perf_counter()
        waiting = threading.Thread(target=lambda: slow.append(fetch(f"{base}/api/status")))
        waiting.start()
        time.sleep(0.3)
        assert waiting.is_alive()  # held by the lock
        assert fetch(f"{base}/healthz") == (200, "ok\n")
        status, alerts = fetch(f"{base}/api/alerts")  # another view, while the slow one runs
        assert status == 200
        assert alerts["omitted"] == {"firing": 0, "pending": 0, "recent": 0}
        assert waiting.is_alive()
        waiting.join(timeout=10)
        took = time.perf_counter() - began
    assert slow == [(503, {"detail": "status: not done within its time budget of 1.5 s"})]
    assert 1.4 < took < 3.0


def test_heavy_requests_over_the_limit_are_refused_at_once(migrated_db: str) -> None:
    app = create_app(migrated_db, limits=ViewLimits(budget_s=1.5, concurrent=1))
    with serving(app) as base:
        with metrics_locked(migrated_db):
            waiting = threading.Thread(target=lambda: fetch(f"{base}/api/status"))
            waiting.start()
            time.sleep(0.3)
            began = time.perf_counter()
            busy = fetch(f"{base}/api/alerts")
            assert time.perf_counter() - began < 0.5
            assert busy == (
                503,
                {"detail": "alerts: busy (1 view requests already running); try again shortly"},
            )
            assert fetch(f"{base}/healthz")[0] == 200
            waiting.join(timeout=10)
        assert fetch(f"{base}/api/alerts")[0] == 200  # the slot is free again


def test_the_dashboard_says_how_many_it_left_out(flooded: Run, browser: Browser) -> None:
    with serving(create_app(flooded.url)) as base:
        page = browser.new_page()
        try:
            page.set_default_timeout(10_000)
            page.goto(f"{base}/")
            expect(page.locator("#consumers tr.more")).to_have_text(f"and {FLOOD - 100:,} more")
            expect(page.locator("#consumers .badge-bad").first).to_have_text("STOP")
            expect(page.locator("#dlq-reasons tr.more")).to_have_text(f"and {FLOOD - 100:,} more")
            expect(page.locator("#dlq-reasons tr")).to_have_count(101)
            expect(page.locator("#stuck-list li.more")).to_have_text(f"and {STUCK - 100:,} more")
            expect(page.locator("#alerts-firing li.more")).to_have_text(
                f"and {FIRING - 100:,} more"
            )
            expect(page.locator("#alerts-recent tr.more")).to_have_text(
                f"and {FIRING + PENDING - 50:,} more"
            )
            expect(page.locator("#firing-count")).to_have_text(f"{FIRING:,} firing")
        finally:
            page.close()
