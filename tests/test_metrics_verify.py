"""``rttm metrics verify``: stored metrics recounted from the event tables of a real PostgreSQL.

Rows go straight into the event tables and, for the metrics, the points the engine would
store for them (``engine_points``, a small mirror of the merge step); then verify runs, as
a function and through the CLI, on planted differences and on what must stay clean.
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main
from psycopg import sql
from psycopg.types.json import Jsonb

from rttm.core.config import KafkaSettings
from rttm.core.contracts import DlqEvent, ErrorEvent, LogEvent, Message, TradeEvent
from rttm.core.db.connect import Conn
from rttm.core.errors import RttmError
from rttm.core.metric_catalogue import METRICS, named
from rttm.core.registry import TOPICS, TopicSpec
from rttm.metrics import flow as metrics_flow
from rttm.metrics import settings as metrics_settings
from rttm.metrics.limits import OTHER
from rttm.metrics.pipeline import load
from rttm.metrics.points import Labels, labels_of
from rttm.metrics.reasons import reason_group
from rttm.metrics.shard import COUNTED_LEVELS
from rttm.views import verify
from support import simulated
from support.kafka import produce
from tests.ingest_helpers import create_topics, flow_env, ingest
from tests.servers import migrated_database, rttm_against

pytestmark = pytest.mark.integration

W = 10
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: End of the newest stored window: with the default lateness (5s) and correction (1h),
#: every window ending by BASE + 65s is settled.
REFERENCE_END = BASE + timedelta(hours=1, seconds=70)
PIPELINE = load()
LATENCY = {"p50": 100.0, "p95": 150.0, "p99": 200.0}


def spec_of(struct: type[Message]) -> TopicSpec:
    (spec,) = (spec for spec in TOPICS if spec.struct is struct)
    return spec


TRADES, DLQ, ERRORS, LOGS = (spec_of(s) for s in (TradeEvent, DlqEvent, ErrorEvent, LogEvent))


@dataclass(frozen=True)
class Trade:
    service: str
    event_type: str
    at: datetime
    trade_id: str = "TRD-1"


@dataclass(frozen=True)
class Dlq:
    topic: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Error:
    service: str
    error_type: str
    at: datetime


@dataclass(frozen=True)
class Log:
    service: str
    level: str
    category: str
    at: datetime


Event = Trade | Dlq | Error | Log
#: (metric, window start, labels, value) as rttm_metrics holds it
Stored = tuple[str, datetime, dict[str, str], float]
_offsets = itertools.count()


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def env_of(url: str, **settings: str) -> dict[str, str]:
    """An environment of the database and engine settings (the defaults unless given)."""
    env = {"RTTM_DATABASE_URL": url, "RTTM_METRICS_WINDOW": f"{W}s"}
    env.update({f"RTTM_METRICS_{name.upper()}": value for name, value in settings.items()})
    return env


# -- rows and points ----------------------------------------------------------------------


def insert(conn: Conn, events: Sequence[Event]) -> list[tuple[str, int, int, datetime]]:
    """Rows of ``events`` in their tables; their (topic, partition, offset, event time)."""
    coordinates = []
    for event in events:
        offset = next(_offsets)
        key = f"e:{uuid.uuid4()}"
        row: dict[str, Any]
        if isinstance(event, Trade):
            spec, row = (
                TRADES,
                {
                    "trade_id": event.trade_id,
                    "service_name": event.service,
                    "event_type": event.event_type,
                    "event_status": "OK",
                },
            )
        elif isinstance(event, Dlq):
            spec, row = (
                DLQ,
                {
                    "trade_id": "TRD-1",
                    "service_name": "svc",
                    "topic_name": event.topic,
                    "reason": event.reason,
                },
            )
        elif isinstance(event, Error):
            spec, row = (
                ERRORS,
                {
                    "service_name": event.service,
                    "error_type": event.error_type,
                    "error_message": "boom",
                },
            )
        else:
            spec, row = (
                LOGS,
                {
                    "service_name": event.service,
                    "log_level": event.level,
                    "log_category": event.category,
                    "message": "line",
                },
            )
        row |= {
            "event_time": event.at,
            "dedupe_key": key,
            "kafka_partition": 0,
            "kafka_offset": offset,
        }
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(spec.table),
                sql.SQL(", ").join(map(sql.Identifier, row)),
                sql.SQL(", ").join(sql.Placeholder() * len(row)),
            ),
            list(row.values()),
        )
        coordinates.append((spec.name, 0, offset, event.at))
    return coordinates


def window_of(moment: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(moment.timestamp() / W) * W, UTC)


def engine_points(events: Sequence[Event]) -> list[Stored]:
    """The points the merge step stores for ``events`` (no folding, no gauges)."""
    windows: dict[datetime, list[Event]] = {}
    for event in events:
        windows.setdefault(window_of(event.at), []).append(event)
    points: list[Stored] = []
    for start, found in sorted(windows.items()):

        def add(metric: str, value: float, start: datetime = start, **labels: str) -> None:
            points.append((metric, start, labels, float(value)))

        trades = [e for e in found if isinstance(e, Trade)]
        per_service = Counter(t.service for t in trades)
        for (service, event_type), n in Counter((t.service, t.event_type) for t in trades).items():
            add("events", n, service=service, event_type=event_type)
        for service, n in per_service.items():
            add("tps", n / W, service=service)
        started = sum(t.event_type in PIPELINE.first_events for t in trades)
        completed = sum(t.event_type in PIPELINE.completed for t in trades)
        rejected = sum(t.event_type in PIPELINE.rejected for t in trades)
        if started or completed or rejected:
            add("trades_started", started)
            add("trades_completed", completed)
            add("trades_rejected", rejected)
        if completed:
            for quantile, value in LATENCY.items():
                add("e2e_latency_ms", value, quantile=quantile)
        dlq = Counter((d.topic, reason_group(d.reason)) for d in found if isinstance(d, Dlq))
        for (topic, reason), n in dlq.items():
            add("dlq_events", n, topic=topic, reason=reason)
        for topic, n in Counter(d.topic for d in found if isinstance(d, Dlq)).items():
            add("dlq_rate", n / W, topic=topic)
        if started:
            add("dlq_ratio", sum(dlq.values()) / started)
        errors = Counter((e.service, e.error_type) for e in found if isinstance(e, Error))
        for (service, error_type), n in errors.items():
            add("errors", n, service=service, error_type=error_type)
        for service, n in Counter(e.service for e in found if isinstance(e, Error)).items():
            add("error_rate", n / W, service=service)
            if per_service[service]:
                add("error_ratio", n / per_service[service], service=service)
        logs = [g for g in found if isinstance(g, Log) and g.level.upper() in COUNTED_LEVELS]
        for (service, level, category), n in Counter(
            (g.service, g.level, g.category) for g in logs
        ).items():
            add("log_events", n, service=service, level=level, category=category)
        for (service, level), n in Counter((g.service, g.level) for g in logs).items():
            add("log_rate", n / W, service=service, level=level)
    return points


def store(conn: Conn, points: Sequence[Stored]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rttm_metrics (metric, window_start, labels, window_end, value)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(m, s, Jsonb(labels), s + timedelta(seconds=W), v) for m, s, labels, v in points],
        )


def store_reference(conn: Conn, end: datetime = REFERENCE_END) -> None:
    """A gauge point whose window is the newest: the engine's progress."""
    gauge = ("consumer_status", end - timedelta(seconds=W), {"service": "s", "topic": "t"}, 0.0)
    store(conn, [gauge])


def set_value(conn: Conn, metric: str, start: datetime, labels: dict[str, str], value: str) -> None:
    """``UPDATE rttm_metrics SET value = <value expression>`` of one point (it must exist)."""
    statement = sql.SQL(
        "UPDATE rttm_metrics SET value = {} WHERE metric = %s AND window_start = %s AND labels = %s"
    ).format(sql.SQL(value))  # the test's own expression, such as "value + 1"
    cursor = conn.execute(statement, (metric, start, Jsonb(labels)))
    assert cursor.rowcount == 1


def delete(conn: Conn, metric: str, start: datetime, labels: dict[str, str]) -> None:
    cursor = conn.execute(
        "DELETE FROM rttm_metrics WHERE metric = %s AND window_start = %s AND labels = %s",
        (metric, start, Jsonb(labels)),
    )
    assert cursor.rowcount == 1


def lbl(**values: str) -> Labels:
    return labels_of(values)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(postgres_admin_url: str) -> Iterator[str]:
    with migrated_database(postgres_admin_url, "rttm_verify") as url:
        yield url


@pytest.fixture
def url(database: str) -> str:
    """The module's database, emptied of events and metrics."""
    names = [
        *(spec.table for spec in (TRADES, DLQ, ERRORS, LOGS)),
        "rttm_metrics",
        verify.UNCOUNTED_TABLE,
    ]
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, names))))
    return database


@pytest.fixture
def conn(url: str) -> Iterator[Conn]:
    with psycopg.connect(url, autocommit=True) as connection:
        yield connection


def platform() -> list[Event]:
    """A few windows of every kind of event, the faults included."""
    return [
        Trade("simulation-service", "TRADE_CREATED", at(1), "TRD-1"),
        Trade("simulation-service", "TRADE_CREATED", at(2), "TRD-2"),
        Trade("simulation-service", "TRADE_CREATED", at(3), "TRD-3"),
        Trade("trade-capture-service", "CAPTURE_SUCCESS", at(4), "TRD-1"),
        Trade("trade-capture-service", "CAPTURE_FAILED", at(5), "TRD-2"),
        Trade("validation-service", "VALIDATION_SUCCESS", at(12), "TRD-1"),
        Trade("leaderboard-service", "LEADERBOARD_UPDATED", at(14), "TRD-1"),
        Trade("simulation-service", "TRADE_CREATED", at(15), "TRD-4"),
        Trade("simulation-service", "TRADE_CREATED", at(25.5), "TRD-5"),
        Dlq("trade-input.DLQ", "trade TRD-000002 rejected at offset 4411", at(5)),
        Dlq("trade-input.DLQ", "trade TRD-000003 rejected at offset 4412", at(6)),
        Dlq("trade-input.DLQ", "schema mismatch", at(13)),
        Dlq("position.DLQ", "timeout after 30s", at(23)),
        Error("trade-capture-service", "TimeoutError", at(5)),
        Error("trade-capture-service", "TimeoutError", at(7)),
        Error("trade-capture-service", "ValueError", at(8)),
        Error("pms-core", "KeyError", at(21)),
        Log("pms-core", "ERROR", "database", at(2)),
        Log("pms-core", "warn", "database", at(3)),
        Log("pms-core", "WARNING", "network", at(4)),
        Log("pms-core", "ERROR", "database", at(16)),
        Log("pms-core", "INFO", "startup", at(17)),
    ]


def filled(conn: Conn, events: Sequence[Event] | None = None) -> list[Stored]:
    """Rows of ``events`` (default: ``platform()``), their points and the reference."""
    events = platform() if events is None else events
    insert(conn, events)
    points = engine_points(events)
    store(conn, points)
    store_reference(conn)
    return points


# -- tests --------------------------------------------------------------------------------


def test_matching_points_verify_clean(url: str, conn: Conn) -> None:
    points = filled(conn)
    report = verify.run(env_of(url), 3600)
    assert report.differences == ()
    assert report.ok
    latency_groups = {(m, s) for m, s, _, _ in points if m == "e2e_latency_ms"}
    assert report.compared == len(points) - 3 * len(latency_groups) + len(latency_groups)
    assert report.span is not None
    assert report.span.reference == REFERENCE_END.timestamp()
    assert report.span.end == (BASE + timedelta(seconds=60)).timestamp()
    assert report.span.windows == 359
    assert sum(report.left_out.values()) == 0


def test_the_cli_says_what_it_checked_and_exits_0(url: str, conn: Conn) -> None:
    filled(conn)
    result = rttm_against(url, "metrics", "verify", "--since", "2h")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "checked 2026-03-01T10:01:10Z to 2026-03-01T12:01:00Z (719 windows, --since 2h); "
        "reference 2026-03-01T13:01:10Z (end of the newest window stored), settled up to "
        "2026-03-01T12:01:05Z"
    ), lines[0]
    assert lines[1] == "settings: window 10s, lateness 5s, correction horizon 1h"
    assert "differences" not in lines
    assert any(
        line.startswith("719 windows checked, ") and line.endswith(" 0 differences")
        for line in lines
    ), lines
    assert any("hop_latency_ms, e2e_latency_ms" in line for line in lines)
    assert any(line.startswith("not checked: queue_lag,") for line in lines)


def test_an_edited_point_is_a_mismatch_with_its_window_and_labels(url: str, conn: Conn) -> None:
    filled(conn)
    labels = {"service": "trade-capture-service", "error_type": "TimeoutError"}
    set_value(conn, "errors", at(0), labels, "value + 1")
    report = verify.run(env_of(url), 3600)
    assert report.differences == (
        verify.Difference(
            int(at(0).timestamp()), "errors", labels_of(labels), 3.0, 2, verify.MISMATCH
        ),
    )
    assert report.differences[0].difference == 1.0
    result = rttm_against(url, "metrics", "verify")
    assert result.returncode == 1, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [
        "2026-03-01T12:00:00Z",
        "errors",
        "error_type=TimeoutError,",
        "service=trade-capture-service",
        "3",
        "2",
        "1",
        "mismatch",
    ] in rows, result.stdout
    assert result.stdout.splitlines()[-4].endswith(" 1 difference")


def test_json_lists_the_differences(url: str, conn: Conn) -> None:
    filled(conn)
    set_value(conn, "trades_started", at(0), {}, "value - 1")
    result = rttm_against(url, "metrics", "verify", "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["differences"] == [
        {
            "window_start": "2026-03-01T12:00:00Z",
            "metric": "trades_started",
            "labels": {},
            "stored": 2.0,
            "recounted": 3,
            "difference": -1.0,
            "kind": "mismatch",
            "note": "",
            "points": 1,
        }
    ]
    assert data["settings"] == {
        "window_seconds": 10,
        "lateness_seconds": 5.0,
        "correction_seconds": 3600.0,
        "since_seconds": 3600.0,
    }
    assert data["windows"] == 359
    assert data["reference"] == "2026-03-01T13:01:10Z"


def test_a_deleted_point_is_missing_and_so_is_a_row_without_a_point(url: str, conn: Conn) -> None:
    filled(conn)
    labels = {"service": "simulation-service", "event_type": "TRADE_CREATED"}
    delete(conn, "events", at(10), labels)
    insert(conn, [Error("analytics-service", "OSError", at(44))])  # a window of no point
    report = verify.run(env_of(url), 3600)
    found = {(d.window_start, d.metric, d.labels): d for d in report.differences}
    assert len(report.differences) == 2
    deleted = found[int(at(10).timestamp()), "events", labels_of(labels)]
    assert (deleted.stored, deleted.recounted, deleted.kind) == (None, 1, verify.MISSING)
    assert deleted.difference == -1.0
    lone = found[
        int(at(40).timestamp()), "errors", lbl(service="analytics-service", error_type="OSError")
    ]
    assert (lone.stored, lone.recounted, lone.kind) == (None, 1, verify.MISSING)


def test_missing_outcome_points_are_zero_and_a_point_without_rows_is_unexpected(
    url: str, conn: Conn
) -> None:
    filled(conn)
    for metric in verify.OUTCOMES:  # window 20: one trade started, nothing completed
        delete(conn, metric, at(20), {})
    store(
        conn,
        [
            ("errors", at(30), {"service": "ghost", "error_type": "E"}, 2.0),
            ("trades_rejected", at(30), {}, 0.0),
        ],
    )
    report = verify.run(env_of(url), 3600)
    assert [
        (d.window_start - int(BASE.timestamp()), d.metric, d.kind, d.stored, d.recounted)
        for d in report.differences
    ] == [
        (20, "trades_started", verify.MISSING, None, 1),
        (30, "errors", verify.UNEXPECTED, 2.0, 0),
    ]


def test_uncounted_rows_are_left_out_and_counted(url: str, conn: Conn) -> None:
    filled(conn)
    late: list[Event] = [
        Trade("simulation-service", "TRADE_CREATED", at(3), "TRD-LATE"),
        Error("pms-core", "KeyError", at(22)),
    ]
    coordinates = insert(conn, late)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rttm_metrics_uncounted (topic, kafka_partition, kafka_offset,"
            " event_time, reason) VALUES (%s, %s, %s, %s, 'late')",
            coordinates,
        )
    report = verify.run(env_of(url), 3600)
    assert report.differences == ()
    assert report.left_out == {TRADES.name: 1, ERRORS.name: 1}
    result = rttm_against(url, "metrics", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 2 rows left out as uncounted, 0 differences" in result.stdout
    # Noted with another event time, the same coordinates are another event: counted.
    conn.execute(
        "UPDATE rttm_metrics_uncounted SET event_time = event_time + interval '1 ms'"
        " WHERE topic = %s",
        (ERRORS.name,),
    )
    report = verify.run(env_of(url), 3600)
    assert report.left_out == {TRADES.name: 1}
    assert [(d.metric, d.labels, d.stored, d.recounted) for d in report.differences] == [
        ("errors", lbl(service="pms-core", error_type="KeyError"), 1.0, 2),
        ("error_rate", lbl(service="pms-core"), 0.1, 0.2),
    ]


def test_other_points_must_sum_what_no_named_point_has(url: str, conn: Conn) -> None:
    services = [f"svc-{i}" for i in range(5)]
    events: list[Event] = [Error(s, "E", at(1 + i)) for i, s in enumerate(services)]
    events += [
        Error("svc-0", "E", at(8)),
        Dlq("q1.DLQ", "a", at(2)),
        Dlq("q1.DLQ", "b", at(3)),
        Dlq("q2.DLQ", "a", at(4)),
        Dlq("q3.DLQ", "c", at(5)),
    ]
    insert(conn, events)
    store_reference(conn)
    other2 = {"service": OTHER, "error_type": OTHER}
    store(
        conn,
        [
            ("errors", at(0), {"service": "svc-0", "error_type": "E"}, 2.0),
            ("errors", at(0), {"service": "svc-1", "error_type": "E"}, 1.0),
            ("errors", at(0), other2, 3.0),  # svc-2, svc-3 and svc-4
            ("error_rate", at(0), {"service": OTHER}, 12345.0),  # folded: not recomputed
            ("dlq_events", at(0), {"topic": "q1.DLQ", "reason": "a"}, 1.0),
            ("dlq_events", at(0), {"topic": "q1.DLQ", "reason": OTHER}, 1.0),  # b: over the book
            ("dlq_events", at(0), {"topic": OTHER, "reason": OTHER}, 2.0),  # q2 and q3
        ],
    )
    report = verify.run(env_of(url), 3600)
    assert report.differences == ()
    set_value(conn, "errors", at(0), other2, "2")
    (difference,) = verify.run(env_of(url), 3600).differences
    assert (
        difference.metric,
        difference.labels,
        difference.stored,
        difference.recounted,
        difference.kind,
    ) == ("errors", labels_of(other2), 2.0, 3, verify.MISMATCH)
    set_value(conn, "errors", at(0), other2, "3")
    set_value(conn, "dlq_events", at(0), {"topic": OTHER, "reason": OTHER}, "3")
    (difference,) = verify.run(env_of(url), 3600).differences
    assert (difference.metric, difference.stored, difference.recounted, difference.points) == (
        "dlq_events",
        4.0,
        3,
        2,
    )
    assert difference.labels == lbl(topic=OTHER, reason=OTHER)  # the fully folded one shown
    # Without an __other__ point, what no named point has is missing, label set by label set.
    delete(conn, "errors", at(0), other2)
    report = verify.run(env_of(url), 3600)
    missing = [(d.labels, d.recounted) for d in report.differences if d.metric == "errors"]
    assert missing == [(lbl(service=f"svc-{i}", error_type="E"), 1) for i in (2, 3, 4)]
    assert all(d.kind == verify.MISSING for d in report.differences if d.metric == "errors")


def test_only_settled_windows_since_the_given_duration_are_checked(url: str, conn: Conn) -> None:
    # Every window from BASE to BASE + 100s has an error row and a point one too high.
    events = [Error("pms-core", "KeyError", at(10 * i + 1)) for i in range(10)]
    insert(conn, events)
    store(
        conn,
        [
            (m, s, labels, v + 1 if m == "errors" else v)
            for m, s, labels, v in engine_points(events)
        ],
    )
    store_reference(conn, at(100))  # the engine got to BASE + 100s
    env = env_of(url, lateness="5s", correction="30s")  # settled: ending by BASE + 65s

    def checked(since: float) -> list[int]:
        report = verify.run(env, since)
        assert report.span is not None
        assert report.span.settled_end == at(65).timestamp()
        assert report.span.end == at(60).timestamp()
        return [d.window_start - int(BASE.timestamp()) for d in report.differences]

    assert checked(3600) == [0, 10, 20, 30, 40, 50]
    assert checked(30) == [40, 50]  # windows starting at or after BASE + 35s
    assert checked(40) == [30, 40, 50]
    # With a correction horizon of 1h, none of them is settled yet.
    report = verify.run(env_of(url, lateness="5s", correction="1h"), 3600)
    assert report.span is not None
    assert report.span.end == at(100 - 5 - 3600 - 5).timestamp()
    assert report.ok


def test_a_wrong_derived_point_is_reported(url: str, conn: Conn) -> None:
    filled(conn)
    set_value(conn, "tps", at(10), {"service": "simulation-service"}, "value * 2")
    set_value(conn, "error_ratio", at(0), {"service": "trade-capture-service"}, "0.5")
    store(conn, [("error_ratio", at(20), {"service": "pms-core"}, 1.0)])  # no pms-core events
    report = verify.run(env_of(url), 3600)
    assert [
        (d.window_start - int(BASE.timestamp()), d.metric, d.stored, d.recounted, d.kind)
        for d in report.differences
    ] == [
        (0, "error_ratio", 0.5, 1.5, verify.MISMATCH),
        (10, "tps", 0.2, 0.1, verify.MISMATCH),
        (20, "error_ratio", 1.0, None, verify.UNEXPECTED),
    ]


def test_latencies_must_be_ordered_and_only_where_trades_completed(url: str, conn: Conn) -> None:
    filled(conn)
    set_value(conn, "e2e_latency_ms", at(10), {"quantile": "p50"}, "500")
    hop = {"from_stage": "created", "to_stage": "captured"}
    store(
        conn,
        [
            ("e2e_latency_ms", at(20), {"quantile": "p50"}, 10.0),  # nothing completed at 20
            ("hop_latency_ms", at(0), {**hop, "quantile": "p50"}, 5.0),
            ("hop_latency_ms", at(0), {**hop, "quantile": "p95"}, float("nan")),
            ("hop_latency_ms", at(0), {**hop, "quantile": "p99"}, 9.0),
            # Folded, a p50 may exceed the p99: each quantile keeps its own largest points.
            (
                "hop_latency_ms",
                at(0),
                {"from_stage": OTHER, "to_stage": OTHER, "quantile": "p50"},
                50.0,
            ),
            (
                "hop_latency_ms",
                at(0),
                {"from_stage": OTHER, "to_stage": OTHER, "quantile": "p99"},
                20.0,
            ),
        ],
    )
    report = verify.run(env_of(url), 3600)
    assert [
        (d.window_start - int(BASE.timestamp()), d.metric, d.kind, d.note)
        for d in report.differences
    ] == [
        (0, "hop_latency_ms", verify.INVALID, "p95 is nan"),
        (10, "e2e_latency_ms", verify.INVALID, "not ordered: p50 500, p95 150, p99 200"),
        (
            20,
            "e2e_latency_ms",
            verify.UNEXPECTED,
            "end-to-end latency in a window where no trade completed",
        ),
    ]


def test_log_levels_not_counted_are_ignored(url: str, conn: Conn) -> None:
    logs = [Log("pms-core", level, "x", at(1)) for level in ("INFO", "debug", "Trace", "INFO")]
    logs.append(Log("pms-core", "Warning", "x", at(2)))
    insert(conn, logs)
    store_reference(conn)
    store(conn, engine_points(logs))
    assert {m for m, _, _, _ in engine_points(logs)} == {"log_events", "log_rate"}
    report = verify.run(env_of(url), 3600)
    assert report.differences == ()
    assert report.compared == 2
    delete(conn, "log_events", at(0), {"service": "pms-core", "level": "Warning", "category": "x"})
    (difference,) = verify.run(env_of(url), 3600).differences
    assert difference.labels == lbl(service="pms-core", level="Warning", category="x")
    assert difference.kind == verify.MISSING


def test_nothing_stored_yet_is_not_a_failure(url: str, conn: Conn) -> None:
    insert(conn, platform())
    report = verify.run(env_of(url), 3600)
    assert report.span is None
    assert report.ok
    result = rttm_against(url, "metrics", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing to verify yet: rttm_metrics is empty")


def test_trouble_is_one_line_and_exit_2(url: str, conn: Conn) -> None:
    store_reference(conn)
    with pytest.raises(RttmError, match="not one of 20s"):
        verify.run(env_of(url, window="20s"), 3600)
    result = rttm_against("postgresql://rttm@127.0.0.1:1/rttm", "metrics", "verify")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("rttm: error: cannot connect to postgres at 127.0.0.1:1/rttm")
    assert len(result.stderr.splitlines()) == 1


def test_settled_span_rounds_to_whole_windows() -> None:
    span = verify.settled_span(1000.0, 10, 5.0, 30.0, 100.0)  # settled end 965
    assert (span.settled_end, span.first, span.end, span.windows) == (965.0, 870, 960, 9)
    span = verify.settled_span(1000.0, 10, 5.0, 30.0, 5.0)  # no whole window since 960
    assert span.windows == 0


def test_what_the_real_flows_store_verifies_clean(migrated_db: str, kafka: KafkaSettings) -> None:
    """A simulated run (faults included) through the ingestion and the metrics flows."""
    url = migrated_db
    create_topics(kafka)
    produce(kafka.brokers, simulated.kafka_messages(simulated.events(120, rate=30, seed=9)))
    ingest(kafka, url)
    env = flow_env(kafka, url)
    run_main(metrics_flow.build_flow(metrics_settings.from_env(env), publish=False))  # type: ignore[no-untyped-call]
    # A bounded run finalizes every window: with no correction horizon, all are settled.
    report = verify.run({**env, "RTTM_METRICS_CORRECTION": "0s"}, 3600)
    assert report.differences == ()
    assert report.span is not None
    assert report.compared > 300
    with psycopg.connect(url) as conn:
        counted = conn.execute(
            "SELECT count(DISTINCT window_start), count(*) FROM rttm_metrics"
            " WHERE metric = ANY(%s) AND window_start < %s",
            (list(verify.COUNTS), datetime.fromtimestamp(report.span.end, UTC)),
        ).fetchone()
    assert counted is not None
    assert counted[0] >= 11  # the two minutes of the run, settled
    assert report.compared > counted[1]  # the counts and more (derived, latencies)


def test_the_table_lists_50_differences_and_counts_the_rest(url: str, conn: Conn) -> None:
    insert(conn, [Error("pms-core", "KeyError", at(-10 * i)) for i in range(60)])
    store_reference(conn)
    result = rttm_against(url, "metrics", "verify")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert sum(" missing" in line for line in lines) == 50
    assert "  and 10 more" in lines
    assert any(line.endswith(" 60 differences") for line in lines)


def test_verify_decides_for_every_metric_of_the_catalogue_once() -> None:
    decided = [
        *verify.COUNTS,
        *verify.DERIVED,
        *verify.LATENCIES,
        *itertools.chain.from_iterable(verify.NOT_CHECKED.values()),
    ]
    assert Counter(decided) == Counter(list(METRICS))  # a new metric is recounted or said not to be
    with pytest.raises(KeyError, match="'trades_begun' is not a metric of the catalogue"):
        named("trades_begun")
