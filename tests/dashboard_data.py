"""A small live platform for the dashboard browser test, written straight into the tables.

Rows are shaped like the ingestion and metrics flows write them, dated relative to now, so
the page sees a platform that is running: three trades (completed, rejected, stuck after
``positioned``), ten-second metric windows of the last fifteen minutes, an open stuck trade
and a firing ``TradeStuck`` alert. Two texts are markup on purpose (an event message and a
DLQ reason): the page must show them as text.

``put_events`` writes one trade's events by COPY, dated from ``T0``: the trace tests' hot
and paged trades, and the browser test's.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count, pairwise

import psycopg

WINDOW = timedelta(seconds=10)
#: Windows seeded: fifteen minutes, ending two windows before now so a newer one still fits.
WINDOWS = 90
SERVICES = (
    "simulation-service",
    "trade-capture-service",
    "validation-service",
    "pms-core",
    "analytics-service",
    "leaderboard-service",
)
STAGES = ("created", "captured", "validated", "positioned", "analysed", "ranked")
#: Each service's TPS in the newest seeded window; the page shows their sum, "15.0".
TPS_PER_SERVICE = 2.5
SCRIPT_MESSAGE = "<script>alert(1)</script>"
#: A receiver's answer is its own text, markup included: the page shows it as text.
DELIVERY_ERROR = "HTTP 503: <b>maintenance</b>"
MARKUP_REASON = '<img src=x onerror="alert(2)">'
DLQ_TOPIC = "trade-dlq"

#: (service, event type, status, source queue, target queue) of each hop of the pipeline.
HOPS = (
    ("simulation-service", "TRADE_CREATED", "SUCCESS", None, "trade-input"),
    ("trade-capture-service", "CAPTURE_SUCCESS", "SUCCESS", "trade-input", "trade-captured"),
    ("validation-service", "VALIDATION_SUCCESS", "SUCCESS", "trade-captured", "trade-valid"),
    ("pms-core", "POSITION_UPDATED", "SUCCESS", "trade-valid", "position-updates"),
    ("analytics-service", "ANALYTICS_COMPUTED", "SUCCESS", "position-updates", "analytics-out"),
    ("leaderboard-service", "LEADERBOARD_UPDATED", "SUCCESS", "analytics-out", None),
)

INSERT_EVENT = """
INSERT INTO rttm_trade_events (event_id, trade_id, service_name, event_type, event_status,
    source_queue, target_queue, topic_name, queue_partition, queue_offset, event_time, message,
    dedupe_key, kafka_partition, kafka_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s)
"""
#: The TradeStuck notification, failed twice at an Alertmanager that answers 503.
INSERT_OUTBOX = """
INSERT INTO rttm_alert_outbox (receiver, rule, labels, started_at, state, status, attempts,
    last_error)
VALUES ('alertmanager http://am.example:9093', 'TradeStuck', %s, %s, 'firing', 'due', 2, %s)
"""
INSERT_DLQ = """
INSERT INTO rttm_dlq_events (trade_id, service_name, topic_name, reason, event_time, dedupe_key,
    kafka_partition, kafka_offset)
VALUES (%s, %s, %s, %s, %s, %s, 0, %s)
"""
INSERT_ERROR = """
INSERT INTO rttm_error_events (trade_id, service_name, error_type, error_message, event_time,
    dedupe_key, kafka_partition, kafka_offset)
VALUES (%s, %s, %s, %s, %s, %s, 0, %s)
"""
INSERT_LOG = """
INSERT INTO rttm_parsed_logs (trade_id, service_name, log_level, log_category, message,
    event_time, dedupe_key, kafka_partition, kafka_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s)
"""
INSERT_METRIC = """
INSERT INTO rttm_metrics (metric, window_start, labels, window_end, value)
VALUES (%s, %s, %s::jsonb, %s, %s)
"""
INSERT_ALERT = """
INSERT INTO rttm_alerts (rule, labels, started_at, state, at, value, severity, summary,
    resolved_at)
VALUES (%s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s)
"""
INSERT_STUCK = """
INSERT INTO rttm_stuck_trades (trade_id, last_event_time, stage, service_name, last_event_type,
    detected_at)
VALUES (%s, %s, %s, %s, %s, %s)
"""

Metric = tuple[str, datetime, str, datetime, float]

#: A fixed moment to date hand-written trades from (the seeded platform is dated from now).
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
COPY_EVENTS = """
COPY rttm_trade_events (trade_id, service_name, event_type, event_status, event_time, message,
    dedupe_key, kafka_partition, kafka_offset)
FROM STDIN
"""
#: (service, event type, event time, message, kafka partition, kafka offset)
Event = tuple[str, str, datetime, str | None, int, int]


def put_events(url: str, trade_id: str, events: Iterable[Event]) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
        for service, kind, time, message, partition, offset in events:
            copy.write_row(
                (
                    trade_id,
                    service,
                    kind,
                    "SUCCESS",
                    time,
                    message,
                    f"k:{trade_id}/{partition}/{offset}",
                    partition,
                    offset,
                )
            )


@dataclass(frozen=True)
class Seeded:
    """What the seeded database holds, for the test's expectations."""

    completed: str  # trade id, six events
    rejected: str  # trade id, three events and a DLQ entry
    stuck: str  # trade id, four events, the last with SCRIPT_MESSAGE
    last_window: datetime  # start of the newest metrics window
    tps_now: float  # sum of the services' TPS in it


def _offsets() -> Iterator[int]:
    return count(1000)


def _metric(name: str, start: datetime, value: float, **labels: str) -> Metric:
    return (name, start, json.dumps(labels, sort_keys=True), start + WINDOW, value)


def tps_window(start: datetime, per_service: float) -> list[Metric]:
    """The ``tps`` points of one window, every service at ``per_service``."""
    return [_metric("tps", start, per_service, service=service) for service in SERVICES]


def add_tps_window(url: str, start: datetime, per_service: float) -> float:
    """Write a newer TPS window (as the metrics flow would); the total TPS it shows."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(INSERT_METRIC, tps_window(start, per_service))
    return per_service * len(SERVICES)


def _dlq_events(i: int) -> int:
    """Messages dead-lettered in window ``i``: a few, every seventh window."""
    return 1 + i % 3 if i % 7 == 0 else 0


def _window_metrics(start: datetime, i: int) -> list[Metric]:
    """Every metric of window number ``i`` (0 the oldest), shaped like the engine's."""
    tps = TPS_PER_SERVICE if i == WINDOWS - 1 else 2.0 + 0.5 * math.sin(i / 8)
    points = tps_window(start, tps)
    points += [
        _metric("trades_started", start, 20),
        _metric("trades_completed", start, 18),
        _metric("trades_rejected", start, 1),
    ]
    for quantile, ms in (("p50", 40.0), ("p95", 120.0), ("p99", 2000.0)):
        points.append(_metric("e2e_latency_ms", start, ms, quantile=quantile))
        for origin, target in pairwise(STAGES):
            points.append(
                _metric(
                    "hop_latency_ms",
                    start,
                    ms / 5,
                    from_stage=origin,
                    to_stage=target,
                    quantile=quantile,
                )
            )
    # pms-core keeps up; analytics-service falls behind (WARN), its lag growing.
    lag = {
        ("pms-core", "trade-valid", "0"): 2.0,
        ("pms-core", "trade-valid", "1"): 3.0,
        ("analytics-service", "position-updates", "0"): 100.0 + 40 * i,
    }
    for (service, topic, partition), messages in lag.items():
        labels = {"service": service, "topic": topic, "partition": partition}
        points += [
            _metric("queue_lag", start, messages, **labels),
            _metric("queue_lag_seconds", start, messages / 20, **labels),
            _metric("consume_rate", start, 20.0, **labels),
        ]
    for service, topic, status in (
        ("pms-core", "trade-valid", 0),
        ("analytics-service", "position-updates", 1),
    ):
        points.append(_metric("consumer_status", start, status, service=service, topic=topic))
        points.append(
            _metric("time_to_data_loss_seconds", start, 259_000.0 - i, service=service, topic=topic)
        )
    dlq = _dlq_events(i)
    depth = 100 + sum(_dlq_events(j) for j in range(i + 1))
    points += [
        _metric("dlq_depth", start, depth, topic=DLQ_TOPIC),
        _metric("dlq_rate", start, dlq / 10, topic=DLQ_TOPIC),
    ]
    if dlq:
        reason = MARKUP_REASON if i == 0 else "Schema validation failed"
        points.append(_metric("dlq_events", start, dlq, topic=DLQ_TOPIC, reason=reason))
    if i % 4 == 0:
        points += [
            _metric("errors", start, 2, service="pms-core", error_type="DB_TIMEOUT"),
            _metric("error_rate", start, 0.2, service="pms-core"),
        ]
    points.append(
        _metric(
            "log_events",
            start,
            1,
            service="analytics-service",
            level="WARN",
            category="PROCESSING_DELAY",
        )
    )
    if i >= 3:  # the stuck trade is detected in the fourth window
        points.append(_metric("stuck_trades", start, 1, stage="positioned", service="pms-core"))
    return points


@dataclass(frozen=True)
class _Trade:
    rows: list[tuple[object, ...]]  # INSERT_EVENT parameters
    last_time: datetime


def _trade(
    trade_id: str,
    start: datetime,
    hops: int,
    offsets: Iterator[int],
    *,
    last_message: str,
    last_type: tuple[str, str] | None = None,
) -> _Trade:
    """The events of a trade through the first ``hops`` hops (the last one possibly failed)."""
    rows: list[tuple[object, ...]] = []
    time = start
    for n, (service, event_type, status, source, target) in enumerate(HOPS[:hops]):
        offset = next(offsets)
        last = n == hops - 1
        kind, outcome = last_type if last and last_type else (event_type, status)
        time = start + timedelta(milliseconds=15 * n + n * n)
        rows.append(
            (
                str(uuid.uuid4()),
                trade_id,
                service,
                kind,
                outcome,
                source,
                target,
                source,
                n % 3,
                offset,
                time,
                last_message if last else f"{kind.lower()} ok",
                f"k:seed/{offset}",
                offset,
            )
        )
    return _Trade(rows, time)


def seed(url: str, now: datetime | None = None) -> Seeded:
    """Fill a migrated database at ``url`` with the platform described in the module doc."""
    now = now or datetime.now(UTC)
    newest = datetime.fromtimestamp(now.timestamp() // 10 * 10, UTC) - 2 * WINDOW
    first = newest - (WINDOWS - 1) * WINDOW
    offsets = _offsets()
    completed, rejected, stuck = "T-DASH-DONE", "T-DASH-REJECTED", "T-DASH-STUCK"
    started = first + timedelta(seconds=3)
    done = _trade(
        completed, started + timedelta(seconds=20), 6, offsets, last_message="leaderboard updated"
    )
    halted = _trade(stuck, started, 4, offsets, last_message=SCRIPT_MESSAGE)
    failed = _trade(
        rejected,
        started + timedelta(seconds=40),
        3,
        offsets,
        last_message="rejected: missing counterparty",
        last_type=("VALIDATION_FAILED", "FAILURE"),
    )
    stuck_last = halted.last_time  # its POSITION_UPDATED; stuck_after is 30 s
    detected = stuck_last + timedelta(seconds=30)
    metrics = [m for i in range(WINDOWS) for m in _window_metrics(first + i * WINDOW, i)]
    stuck_labels = json.dumps({"service": "pms-core", "stage": "positioned"}, sort_keys=True)
    summary = "Trades stopped after a stage: no terminal event within the allowed time"
    old = first - timedelta(minutes=5)
    lag_labels = json.dumps({"service": "pms-core", "topic": "trade-valid"}, sort_keys=True)
    alerts = [
        ("TradeStuck", stuck_labels, detected, "firing", detected, 1.0, "critical", summary, None),
        ("QueueLagGrowing", lag_labels, old, "pending", old, 1.0, "warning", "lag growing", None),
        (
            "QueueLagGrowing",
            lag_labels,
            old,
            "resolved",
            old + WINDOW * 3,
            0.0,
            "warning",
            "lag growing",
            old + WINDOW * 3,
        ),
    ]
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(INSERT_EVENT, done.rows + halted.rows + failed.rows)
        cur.execute(
            INSERT_DLQ,
            (
                rejected,
                "validation-service",
                DLQ_TOPIC,
                MARKUP_REASON,
                failed.last_time,
                "k:seed/dlq/1",
                1,
            ),
        )
        cur.execute(
            INSERT_ERROR,
            (
                stuck,
                "pms-core",
                "DB_TIMEOUT",
                "Timeout while updating position",
                stuck_last,
                "k:seed/err/1",
                1,
            ),
        )
        cur.execute(
            INSERT_LOG,
            (
                completed,
                "analytics-service",
                "WARN",
                "PROCESSING_DELAY",
                "Analytics computation exceeded SLA",
                done.last_time,
                "k:seed/log/1",
                1,
            ),
        )
        cur.executemany(INSERT_METRIC, metrics)
        cur.executemany(INSERT_ALERT, alerts)
        cur.execute(
            INSERT_STUCK,
            (stuck, stuck_last, "positioned", "pms-core", "POSITION_UPDATED", detected),
        )
        cur.execute(INSERT_OUTBOX, (stuck_labels, detected, DELIVERY_ERROR))
    return Seeded(
        completed=completed,
        rejected=rejected,
        stuck=stuck,
        last_window=newest,
        tps_now=TPS_PER_SERVICE * len(SERVICES),
    )
