"""The metrics engine on exact event sequences and simulated runs (TestingSource, no servers).

Ground truth comes from the simulator's own event list or from hand-built events with
exact timestamps; the engine runs as in the flow, from raw Kafka batches on.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from rttm.alerts.rules import METRIC_LABELS, load_rules
from rttm.core.contracts import DlqEvent, ErrorEvent, LogEvent, Message, QueueMetrics, TradeEvent
from rttm.metrics.flow import add_engine
from rttm.metrics.merge import CORRECTED, MetricsOutput
from rttm.metrics.points import MAX_LABEL_CHARS, Point
from support.simulated import T0, raw_batches, sources
from support.simulated import events as simulated
from tests.conftest import EntryPoint, one_worker
from tests.metrics_helpers import engine_config, run_engine, series, stored

WINDOW = 10.0


def window_of(moment: datetime) -> datetime:
    seconds = math.floor(moment.timestamp() / WINDOW) * WINDOW
    return datetime.fromtimestamp(seconds, T0.tzinfo)


def trade(trade_id: str, event_type: str, service: str, at: float) -> TradeEvent:
    return TradeEvent(
        trade_id=trade_id,
        service_name=service,
        event_type=event_type,
        event_status="SUCCESS",
        event_time=T0 + timedelta(seconds=at),
    )


PATH = [
    ("TRADE_CREATED", "simulation-service"),
    ("CAPTURE_SUCCESS", "trade-capture-service"),
    ("VALIDATION_SUCCESS", "validation-service"),
    ("POSITION_UPDATED", "pms-core"),
    ("ANALYTICS_COMPUTED", "analytics-service"),
    ("LEADERBOARD_UPDATED", "leaderboard-service"),
]


def steady_trades(until: float, every: float = 1.0, prefix: str = "B") -> list[TradeEvent]:
    """Background trades, one started every ``every`` s, each completing in 0.5 s."""
    out = []
    for n in range(int(until / every)):
        start = n * every
        out += [
            trade(f"{prefix}{n}", kind, service, start + 0.1 * step)
            for step, (kind, service) in enumerate(PATH)
        ]
    return out


# -- counts ---------------------------------------------------------------------------------


def test_tps_and_event_counts_equal_the_ground_truth_in_every_window() -> None:
    events = simulated(120, rate=40, seed=3)
    out = run_engine(raw_batches(events))
    truth: Counter[tuple[datetime, str, str]] = Counter()
    per_service: Counter[tuple[datetime, str]] = Counter()
    for event in events:
        if isinstance(event, TradeEvent):
            truth[(window_of(event.event_time), event.service_name, event.event_type)] += 1
            per_service[(window_of(event.event_time), event.service_name)] += 1
    got = {
        (p.window_start, p.label("service"), p.label("event_type")): p.value
        for p in out.points
        if p.metric == "events"
    }
    assert got == dict(truth)
    tps = {(p.window_start, p.label("service")): p.value for p in out.points if p.metric == "tps"}
    assert {k: v for k, v in tps.items() if v} == {k: n / WINDOW for k, n in per_service.items()}
    started = series(out.points, "trades_started")
    created = Counter(
        window_of(e.event_time)
        for e in events
        if isinstance(e, TradeEvent) and e.event_type == "TRADE_CREATED"
    )
    assert {k: v for k, v in started.items() if v} == dict(created)
    assert not [p for p in out.points if p.metric == "late_events"]
    kinds = Counter(type(e) for e in events)
    depth = series(out.points, "dlq_depth")
    assert depth[max(depth)] == kinds[DlqEvent]
    assert sum(p.value for p in out.points if p.metric == "dlq_events") == kinds[DlqEvent]
    assert sum(p.value for p in out.points if p.metric == "errors") == kinds[ErrorEvent]
    assert sum(p.value for p in out.points if p.metric == "log_events") == kinds[LogEvent]


def test_latency_percentiles_are_within_one_percent_of_the_exact_ones() -> None:
    events = simulated(60, rate=40, seed=4)
    out = run_engine(raw_batches(events))
    by_trade: dict[str, dict[str, datetime]] = {}
    for event in events:
        if isinstance(event, TradeEvent):
            by_trade.setdefault(event.trade_id, {})[event.event_type] = event.event_time
    e2e: dict[datetime, list[float]] = {}
    for times in by_trade.values():
        if "LEADERBOARD_UPDATED" in times and "TRADE_CREATED" in times:
            done = times["LEADERBOARD_UPDATED"]
            millis = (done - times["TRADE_CREATED"]).total_seconds() * 1000
            e2e.setdefault(window_of(done), []).append(millis)
    p99 = series(out.points, "e2e_latency_ms", quantile="p99")
    assert p99.keys() == e2e.keys()
    for window, values in e2e.items():
        values.sort()
        exact = values[max(1, math.ceil(0.99 * len(values))) - 1]
        assert p99[window] == pytest.approx(exact, rel=0.011)


# -- stuck trades ---------------------------------------------------------------------------


def test_a_trade_stuck_at_pms_core_is_found_within_stuck_after_plus_a_window_and_recovers() -> None:
    stuck = [
        trade("S1", kind, service, 2.0 + 0.1 * step)
        for step, (kind, service) in enumerate(PATH[:4])
    ]
    late_move = trade("S1", "ANALYTICS_COMPUTED", "analytics-service", 75.0)
    events = sorted([*steady_trades(120), *stuck, late_move], key=lambda e: e.event_time)
    out = run_engine(raw_batches(events, partitions=1))

    (found,) = out.stuck
    assert (found.trade_id, found.stage, found.service) == ("S1", "positioned", "pms-core")
    assert found.last_event_type == "POSITION_UPDATED"
    last = (T0 + timedelta(seconds=2.3)).timestamp()
    assert found.detected_at == pytest.approx(last + 30.0)
    gauge = series(out.points, "stuck_trades", stage="positioned", service="pms-core")
    first_seen = min(gauge)
    assert first_seen.timestamp() + WINDOW <= last + 30.0 + WINDOW  # within stuck_after + 1 window
    firing = [t for t in out.transitions if t.rule == "TradeStuck" and t.state == "firing"]
    assert firing
    assert firing[0].at.timestamp() <= last + 30.0 + WINDOW
    (back,) = out.recovered
    assert back.trade_id == "S1"
    assert back.recovered_at == late_move.event_time.timestamp()
    assert [t.state for t in out.transitions if t.rule == "TradeStuck"] == ["firing", "resolved"]


def test_completed_trades_are_forgotten() -> None:
    events = steady_trades(60)
    config = engine_config(sources=frozenset({"rttm.trade.events/0"}))
    flow = Dataflow("forget")
    raw = op.input("raw", flow, TestingSource(raw_batches(events, partitions=1), batch_size=5))
    kept: list[MetricsOutput] = []
    op.output("out", add_engine(raw, config, load_rules()), TestingSink(kept))
    run_main(flow)  # type: ignore[no-untyped-call]
    assert not [p for out in kept for p in out.points if p.metric == "stuck_trades"]
    assert sum(p.value for out in kept for p in out.points if p.metric == "trades_completed") == 60


# -- queues and alerts ------------------------------------------------------------------------


def snapshot(at: float, produced: int, consumed: int) -> QueueMetrics:
    return QueueMetrics(
        service_name="pms-core",
        topic_name="trade-valid",
        partition=0,
        produced_offset=produced,
        consumed_offset=consumed,
        snapshot_time=T0 + timedelta(seconds=at),
    )


def test_lag_build_up_fires_the_lag_alert_which_resolves_once_drained() -> None:
    snaps = []
    consumed = 0
    for step in range(84):  # every 5 s for 7 minutes; 100 msg/s produced
        at = step * 5.0
        produced = int(at * 100)
        if at < 90:
            consumed = produced  # keeping up
        elif at < 300:
            consumed += 100  # falls behind: 20 msg/s
        else:
            consumed = min(produced, consumed + 4_000)  # drains at 800 msg/s
        snaps.append(snapshot(at, produced, consumed))
    out = run_engine(raw_batches(snaps, partitions=1))

    lag = series(out.points, "queue_lag", partition="0")
    assert max(lag.values()) > 10_000
    states = [(t.state, t.at) for t in out.transitions if t.rule == "QueueLagHigh"]
    assert [s for s, _ in states] == ["pending", "firing", "resolved"]
    over = [w for w, v in sorted(lag.items()) if v > 10_000]
    assert states[1][1] - (over[0] + timedelta(seconds=WINDOW)) >= timedelta(minutes=1)
    assert states[2][1] > over[-1]
    status = series(out.points, "consumer_status", service="pms-core")
    assert 1 in status.values()  # WARN while the lag grew
    seconds = series(out.points, "queue_lag_seconds", partition="0")
    assert max(seconds.values()) > 60


def test_a_consumer_that_stops_reporting_is_stop_and_one_that_does_not_move_is_stall() -> None:
    snaps = [snapshot(at, 1_000 + int(at) * 10, 1_000) for at in range(0, 100, 5)]  # stuck
    snaps += [snapshot(at, 5_000, 5_000) for at in range(100, 120, 5)]  # then silent
    background = steady_trades(300)
    out = run_engine(raw_batches([*snaps, *background], partitions=1))
    status = series(out.points, "consumer_status", service="pms-core")
    assert 2 in status.values()  # STALL
    assert max(status.items())[1] == 3  # STOP at the end: no snapshot since 115 s
    rules = {t.rule for t in out.transitions if t.state == "firing"}
    assert {"ConsumerStalled", "ConsumerStopped"} <= rules


def test_a_clean_run_of_ten_simulated_minutes_raises_no_alert() -> None:
    out = run_engine(raw_batches(simulated(600, rate=20, seed=11, clean=True)))
    assert out.points
    assert [t for t in out.transitions if t.state == "firing"] == []
    assert out.stuck == []
    # The same run with the default scenario's faults (stuck trades, a lagging consumer)
    # does raise them: the clean result is not for want of sensitivity.
    faulty = run_engine(raw_batches(simulated(600, rate=20, seed=11)))
    fired = {t.rule for t in faulty.transitions if t.state == "firing"}
    assert {"TradeStuck", "ConsumerStalled"} <= fired
    # Every point is a metric rules may name, with exactly that metric's labels.
    for point in out.points + faulty.points:
        assert {name for name, _ in point.labels} == METRIC_LABELS[point.metric], point


# -- time ---------------------------------------------------------------------------------


def test_late_events_correct_their_window_within_the_horizon() -> None:
    events = steady_trades(60)
    straggler = trade("L1", "TRADE_CREATED", "simulation-service", 3.0)  # after 60 s of others
    batches = raw_batches([*events, straggler], partitions=1, batch=50)
    out = run_engine(batches, engine_config(sources=sources(batches), shards=1))
    first = out.points[0].window_start
    assert series(out.points, "trades_started")[first] == 10  # as finalized, before it came
    [correction] = out.corrections
    assert correction.window_start == first
    corrected = stored(out)
    assert series(corrected, "trades_started")[first] == 11
    assert sum(series(corrected, "trades_started").values()) == 61
    assert series(corrected, "events", event_type="TRADE_CREATED")[first] == 11
    assert sum(series(corrected, "corrected_events", topic="rttm.trade.events").values()) == 1
    assert not series(corrected, "late_events")
    assert not out.uncounted


def test_late_events_past_the_horizon_are_counted_not_applied() -> None:
    events = steady_trades(60)
    straggler = trade("L1", "TRADE_CREATED", "simulation-service", 3.0)  # after 60 s of others
    batches = raw_batches([*events, straggler], partitions=1, batch=50)
    out = run_engine(batches, engine_config(sources=sources(batches), correction_s=20.0))
    late = series(out.points, "late_events", topic="rttm.trade.events")
    assert sum(late.values()) == 1
    started = series(stored(out), "trades_started")
    assert sum(started.values()) == 60  # the late one is counted as late, not in its window
    assert not out.corrections
    [uncounted] = out.uncounted
    where = (uncounted.topic, uncounted.partition, uncounted.offset)
    assert where == ("rttm.trade.events", 0, len(events))  # the straggler's offset
    assert (uncounted.time, uncounted.reason) == (straggler.event_time.timestamp(), "late")


def engine_points(
    events: list[Message], run: EntryPoint, shards: int, *, corrected: bool = False
) -> set[tuple[str, tuple[tuple[str, str], ...], datetime, float]]:
    """Every point of a run; ``corrected``: the count-type points as the sink leaves them."""
    batches = raw_batches(events)
    config = engine_config(shards=shards, sources=sources(batches))
    flow = Dataflow("workers")
    raw = op.input("raw", flow, TestingSource(batches, batch_size=20))
    outputs: list[MetricsOutput] = []
    op.output("out", add_engine(raw, config, load_rules()), TestingSink(outputs))
    run(flow)
    if corrected:
        total = MetricsOutput()
        for out in outputs:
            total.points += out.points
            total.corrections += out.corrections
        points = [p for p in stored(total) if p.metric in CORRECTED]
    else:
        points = [p for out in outputs for p in out.points]
    return {(p.metric, p.labels, p.window_start, round(p.value, 9)) for p in points}


def test_results_are_identical_with_one_and_two_workers_and_any_shard_count(
    entry_point: EntryPoint,
) -> None:
    events = simulated(90, rate=30, seed=5)
    one = engine_points(events, one_worker, shards=2)
    assert one
    for shards in (2, 3, 1):
        assert engine_points(events, entry_point, shards=shards) == one, shards


def test_corrected_results_are_identical_with_one_and_two_workers_and_any_shard_count(
    entry_point: EntryPoint,
) -> None:
    events = simulated(90, rate=30, seed=5)
    # pms-core publishes its events of [20 s, 40 s) after everything else: corrections.
    late = [
        e
        for e in events
        if getattr(e, "service_name", None) == "pms-core"
        and 20 <= (_moment(e) - T0).total_seconds() < 40
    ]
    events = [e for e in events if all(e is not x for x in late)] + late
    assert len(run_engine(raw_batches(events)).corrections) >= 2  # windows were corrected
    one = engine_points(events, one_worker, shards=2, corrected=True)
    assert len(one) > 100
    for shards in (2, 3, 1):
        assert engine_points(events, entry_point, shards=shards, corrected=True) == one, shards
    # Late or not, the counts converge to the same. Latencies do not: a hop is measured
    # when a trade is seen moving forward, and pms-core's events came after the next hop's.
    in_order = engine_points(sorted(events, key=_moment), one_worker, shards=2, corrected=True)
    latency = {"hop_latency_ms", "e2e_latency_ms"}
    assert {p for p in in_order if p[0] not in latency} == {p for p in one if p[0] not in latency}


def _moment(event: Message) -> datetime:
    return event.event_time if hasattr(event, "event_time") else event.snapshot_time  # type: ignore[attr-defined, no-any-return]


def test_points_carry_window_bounds(tmp_path: Path) -> None:
    out = run_engine(raw_batches(steady_trades(30), partitions=1))
    point: Point = out.points[0]
    assert point.window_end - point.window_start == timedelta(seconds=WINDOW)
    assert point.window_start.timestamp() % WINDOW == 0


# -- hostile but valid input ------------------------------------------------------------------


def test_an_event_dated_far_in_the_future_is_counted_apart_and_changes_nothing_else() -> None:
    events = steady_trades(60)
    clean = run_engine(raw_batches(events, partitions=1))
    ahead = (datetime.now(T0.tzinfo) + timedelta(days=400) - T0).total_seconds()
    stray = trade("F1", "TRADE_CREATED", "simulation-service", ahead)
    out = run_engine(raw_batches([*events[:30], stray, *events[30:]], partitions=1))
    assert sum(series(out.points, "future_events").values()) == 1
    without = {(p.metric, p.labels, p.window_start, p.value) for p in clean.points}
    assert {
        (p.metric, p.labels, p.window_start, p.value)
        for p in out.points
        if p.metric != "future_events"
    } == without


def test_a_huge_dlq_reason_becomes_a_bounded_label() -> None:
    reason = "x" * 60_000
    dlq = DlqEvent(
        trade_id="D1",
        service_name="validation-service",
        topic_name="trade-dlq",
        reason=reason,
        event_time=T0 + timedelta(seconds=5),
    )
    out = run_engine(raw_batches([*steady_trades(30), dlq], partitions=1))
    (point,) = [p for p in out.points if p.metric == "dlq_events"]
    label = point.label("reason")
    assert label is not None
    assert len(label) <= MAX_LABEL_CHARS
    assert label.startswith("xxxx")


def test_a_redelivered_last_event_does_not_recover_a_stuck_trade() -> None:
    path = [
        trade("S2", kind, service, 2.0 + 0.1 * step)
        for step, (kind, service) in enumerate(PATH[:4])
    ]
    again = path[-1]  # the same event, delivered once more after the trade was found stuck
    background = steady_trades(90)
    events = sorted([*background, *path], key=lambda e: e.event_time)
    cut = next(i for i, e in enumerate(events) if e.event_time > T0 + timedelta(seconds=60))
    out = run_engine(raw_batches([*events[:cut], again, *events[cut:]], partitions=1, batch=20))
    assert [s.trade_id for s in out.stuck] == ["S2"]
    assert out.recovered == []
