"""What an operator's screen costs (``./dev bench``): ``status`` and ``alerts`` on a day of
metrics windows (8,640 windows of 10 s, ~150 series each: 1.3M rows), the size
``rttm_metrics`` reaches in one day at the defaults. The page polls both every 2 s."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
from pytest_benchmark.fixture import BenchmarkFixture

from rttm.views import alerts, status
from rttm.views.common import open_view

WINDOWS = 8_640
SERVICES = [
    "simulation-service",
    "trade-capture-service",
    "validation-service",
    "pms-core",
    "analytics-service",
    "leaderboard-service",
]


def _fill(url: str) -> int:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY rttm_metrics (metric, window_start, labels, window_end, value) FROM STDIN"
        ) as copy:
            for n in range(WINDOWS):
                begin = start + timedelta(seconds=10 * n)
                end = begin + timedelta(seconds=10)
                series = [("tps", {"service": s}) for s in SERVICES]
                series += [("events", {"service": s, "event_type": "X"}) for s in SERVICES]
                series += [
                    (m, {"service": s, "topic": "q", "partition": str(p)})
                    for m in ("queue_lag", "queue_lag_seconds", "consume_rate")
                    for s in SERVICES
                    for p in range(6)
                ]
                series += [
                    (m, {"service": s, "topic": "q"})
                    for s in SERVICES
                    for m in ("consumer_status", "time_to_data_loss_seconds")
                ]
                series += [("e2e_latency_ms", {"quantile": q}) for q in ("p50", "p95", "p99")]
                series += [("trades_started", {}), ("dlq_depth", {"topic": "trade-dlq"})]
                for metric, labels in series:
                    value = float(n % 4 if metric == "consumer_status" else n % 97)
                    copy.write_row((metric, begin, json.dumps(labels), end, value))
                    rows += 1
        conn.commit()
        conn.execute("ANALYZE rttm_metrics")
    return rows


def test_status_and_alerts_on_a_day_of_windows(
    benchmark: BenchmarkFixture, migrated_db: str
) -> None:
    rows = _fill(migrated_db)
    benchmark.group = f"operator views ({rows:,} metric rows, last 15 minutes)"
    benchmark.extra_info["items"] = 1

    def screen() -> int:
        with open_view(migrated_db) as conn:
            data = status.status(conn, 15)
            alerts.alerts(conn, 50)
        return len(data["tps"]["series"])

    assert benchmark.pedantic(screen, rounds=20) == 90  # 15 minutes of 10 s windows
