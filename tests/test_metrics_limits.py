"""The metrics engine's caps under hostile producers (TestingSource, no servers).

The three producer bugs of issue 17, scaled down: a series per message (distinct services,
queue partitions, DLQ reasons), never-completed trades, and the caps' own parts.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rttm.alerts.engine import AlertEngine
from rttm.alerts.rules import Rule, load_rules
from rttm.core.config import ConfigError
from rttm.core.contracts import DlqEvent, Message, QueueMetrics, TradeEvent
from rttm.metrics import pipeline, stats
from rttm.metrics.limits import OTHER, Limits, fold
from rttm.metrics.points import Point
from rttm.metrics.prometheus import MetricsFlowCollector
from rttm.metrics.queues import QueueTracker
from rttm.metrics.reasons import ReasonBook, reason_group
from rttm.metrics.shard import _bump
from rttm.metrics.trades import TradeTracker
from rttm.metrics.windows import WindowAcc
from support.simulated import T0, raw_batches, sources
from tests.metrics_helpers import engine_config, run_engine

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def point(metric: str, value: float, **labels: str) -> Point:
    return Point(metric, tuple(sorted(labels.items())), START, START + timedelta(seconds=10), value)


# -- the parts ------------------------------------------------------------------------------


def test_fold_keeps_the_largest_and_adds_the_rest_into_other() -> None:
    points = [point("queue_lag", n, service=f"s{n}", partition="0") for n in range(1, 101)]
    kept, folded = fold("queue_lag", points, 10)
    named = {p.label("service"): p.value for p in kept if p.label("service") != OTHER}
    assert named == {f"s{n}": n for n in range(91, 101)}
    other = [p for p in kept if p.label("service") == OTHER]
    assert [(p.labels, p.value) for p in other] == [
        ((("partition", OTHER), ("service", OTHER)), 90.0)  # a state: the worst, not the sum
    ]
    assert folded is not None
    assert (folded.dropped, folded.label) == (90, "service")  # partition has one value


def test_fold_takes_the_worst_of_a_state_and_keeps_quantiles_apart() -> None:
    status = [point("consumer_status", n % 4, service=f"s{n}", topic="t") for n in range(50)]
    kept, _ = fold("consumer_status", status, 5)
    assert [p.value for p in kept if p.label("service") == OTHER] == [3.0]
    loss = [
        point("time_to_data_loss_seconds", 100 + n, service=f"s{n}", topic="t") for n in range(50)
    ]
    kept, _ = fold("time_to_data_loss_seconds", loss, 5)
    assert sorted(p.value for p in kept if p.label("service") != OTHER) == [100, 101, 102, 103, 104]
    assert [p.value for p in kept if p.label("service") == OTHER] == [105.0]
    hops = [
        point("hop_latency_ms", n, from_stage=f"a{n}", to_stage="b", quantile=q)
        for n in range(20)
        for q in ("p50", "p99")
    ]
    kept, folded = fold("hop_latency_ms", hops, 10)
    others = sorted(p.label("quantile") or "" for p in kept if p.label("from_stage") == OTHER)
    assert others == ["p50", "p99"]
    assert folded is not None
    assert folded.label == "from_stage"


def test_fold_takes_the_worst_lag_and_sums_counts() -> None:
    lags = [point("queue_lag", 1, service=f"s{n}", topic="t", partition="0") for n in range(50)]
    kept, _ = fold("queue_lag", lags, 10)
    assert [p.value for p in kept if p.label("service") == OTHER] == [1.0]  # not 40
    counts = [point("errors", 1, service=f"s{n}", error_type="E") for n in range(50)]
    kept, _ = fold("errors", counts, 10)
    assert sum(p.value for p in kept) == 50


def test_fold_ranks_nan_last_in_both_orders() -> None:
    for metric in ("queue_lag_seconds", "time_to_data_loss_seconds"):
        points = [point(metric, float("nan"), service="broken", topic="t")]
        points += [point(metric, n, service=f"s{n}", topic="t") for n in range(5)]
        kept, _ = fold(metric, points, 5)
        assert "broken" not in {p.label("service") for p in kept}
        other = [p.value for p in kept if p.label("service") == OTHER]
        assert len(other) == 1
        assert math.isnan(other[0])  # the folded point had no value


def test_a_window_pickled_before_new_fields_restores_with_their_defaults() -> None:
    acc = WindowAcc(started=3)
    acc.events[("svc", "X")] = 2
    old_shape = acc.__getstate__()[:-2]  # as a snapshot made before the untracked counters
    restored = WindowAcc.__new__(WindowAcc)
    restored.__setstate__(old_shape)
    assert (restored.started, restored.events) == (3, {("svc", "X"): 2})
    assert (restored.untracked_trades, restored.untracked_partitions) == (0, 0)
    restored.merge(acc)
    assert restored.started == 6


def test_a_shard_counts_a_bounded_number_of_label_sets_per_window() -> None:
    counts: dict[tuple[str, str], int] = {}
    for n in range(1000):
        _bump(counts, (f"svc-{n}", "E"), 100, (OTHER, OTHER))
    assert len(counts) == 101
    assert counts[(OTHER, OTHER)] == 900
    _bump(counts, ("svc-1", "E"), 100, (OTHER, OTHER))  # a known one still counts as itself
    assert counts[("svc-1", "E")] == 2


def test_fold_leaves_a_metric_under_the_cap_alone() -> None:
    points = [point("events", 1, service=f"s{n}", event_type="X") for n in range(10)]
    assert fold("events", points, 10) == (points, None)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("trade TRD-000123 rejected at offset 4411", "trade TRD-999 rejected at offset 12"),
        (
            "schema error in 3f2a9c1e-77b1-4c02-9d3e-0123456789ab",
            "schema error in a1b2c3d4-0000-4000-8000-ffffffffffff",
        ),
        ("bad checksum 0xdeadbeef01", "bad checksum 9f8e7d6c5b"),
        (
            "timeout after 3000 ms at 2026-12-07T10:00:01Z",
            "timeout after 12 ms at 2026-01-01T00:00:00Z",
        ),
        ("request req_9f2k1x failed", "request req_a83kd0 failed"),
    ],
)
def test_reason_grouping_folds_ids_numbers_and_hex(first: str, second: str) -> None:
    assert reason_group(first) == reason_group(second)


def test_reason_grouping_keeps_different_reasons_apart() -> None:
    reasons = [
        "missing field price",
        "missing field quantity",
        "unknown venue",
        "facade decade accede",
        "price 12 out of range",
        "quantity 12 out of range",
    ]
    groups = {reason_group(r) for r in reasons}
    assert len(groups) == len(reasons)
    assert reason_group("facade decade accede") == "facade decade accede"  # words, not hex
    assert len(reason_group("x" * 100_000)) <= 200


def test_reason_book_names_the_most_frequent_and_keeps_totals_exact() -> None:
    book = ReasonBook(cap=3, topics=2)
    for reason, count in [("a", 5), ("b", 4), ("c", 3), ("d", 1), ("e", 2)]:
        book.add("dlq", reason, count)
    assert book.depth["dlq"] == {"a": 5, "b": 4, "c": 3, OTHER: 3}
    assert book.add("dlq", "f", 10) == ("dlq", "f")  # more frequent than "c": takes its place
    assert book.depth["dlq"] == {"a": 5, "b": 4, "f": 10, OTHER: 6}
    assert book.by_topic() == {"dlq": 25}
    book.add("other-dlq", "a", 1)
    assert book.add("third-dlq", "a", 1) == (OTHER, "a")  # beyond the topic cap


def test_limits_from_the_environment() -> None:
    assert Limits.from_env({}) == Limits()
    assert Limits.from_env({"RTTM_METRICS_MAX_SERIES": "5_000"}).series == 5000
    with pytest.raises(ConfigError, match="RTTM_METRICS_MAX_TRADES must be a whole number"):
        Limits.from_env({"RTTM_METRICS_MAX_TRADES": "lots"})
    with pytest.raises(ConfigError, match="at least 2"):
        Limits.from_env({"RTTM_ALERTS_MAX_PER_RULE": "1"})


def test_trade_tracker_lets_go_of_the_least_recently_active_and_counts_each_once() -> None:
    tracker = TradeTracker(pipeline.load(), capacity=1000)
    tracker.observe(("keep", "simulation-service", "TRADE_CREATED", 0.0, 0, 0), None)
    evicted = 0
    for n in range(10_000):
        moment = 1.0 + n * 0.001
        tracker.observe((f"T{n}", "simulation-service", "TRADE_CREATED", moment, n, 0), None)
        if n % 100 == 0:  # "keep" stays active, so it is never the least recently active
            moved = ("keep", "trade-capture-service", "CAPTURE_SUCCESS", moment, n, 0)
            tracker.observe(moved, None)
        evicted += tracker.take_evicted()
    assert len(tracker.live) <= 1000
    assert "keep" in tracker.live
    assert "T9999" in tracker.live
    assert evicted + len(tracker.live) == 10_001
    assert len(tracker.deadlines) <= 2 * len(tracker.live) + 10_001
    stuck = tracker.due(1000.0)  # every tracked trade is found stuck, exactly once
    assert tracker.due(1000.0) == []
    assert len(stuck) == len(tracker.live)


def test_trade_tracker_remembers_a_bounded_number_of_ended_trades() -> None:
    tracker = TradeTracker(pipeline.load(), capacity=100)
    for n in range(1000):
        tracker.observe((f"T{n}", "simulation-service", "TRADE_CREATED", float(n), n, 0), None)
        tracker.observe((f"T{n}", "trade-capture-service", "CAPTURE_FAILED", n + 0.5, n, 0), None)
    assert len(tracker.ended) <= 100
    assert len(tracker.ended_order) <= 100
    assert not tracker.live


def test_queue_tracker_lets_go_of_the_least_recently_reported() -> None:
    queues = QueueTracker(capacity=100)
    for n in range(1000):
        queues.add(("svc", "q", n, 10, 5, float(n)))
        queues.add(("svc", "q", -1, 10, 5, float(n)))  # reports all along: kept
    assert len(queues.parts) <= 100
    assert len(queues.moved) <= 100
    assert ("svc", "q", -1) in queues.parts
    assert ("svc", "q", 999) in queues.parts
    assert queues.take_evicted() + len(queues.parts) == 1001
    assert queues.take_evicted() == 0


def test_alerts_per_rule_are_capped_with_one_other_alert() -> None:
    rule = Rule(name="LagHigh", metric="queue_lag", op=">", threshold=10, severity="warning")
    engine = AlertEngine([rule], max_per_rule=10)
    at = START + timedelta(seconds=10)
    points = [
        point("queue_lag", 100 + n, service=f"s{n}", topic="t", partition="0") for n in range(500)
    ] + [point("queue_lag", 1, service="calm", topic="t", partition="0")]
    changes = engine.evaluate(points, at)
    assert len(changes) == 10
    assert all(c.state == "firing" for c in changes)
    other = [c for c in changes if dict(c.labels)["service"] == OTHER]
    assert len(other) == 1
    assert other[0].value == 100 + 499 - 9
    named = sorted(int(dict(c.labels)["service"][1:]) for c in changes if c not in other)
    assert named == list(range(491, 500))  # the worst nine keep their names
    # The same flood again: no new transition; the named ones and __other__ go on firing.
    assert engine.evaluate(points, at + timedelta(seconds=10)) == []
    assert len(engine.active()) == 10


# -- through the engine ---------------------------------------------------------------------


def queue_flood(count: int) -> list[Message]:
    """``count`` snapshots, each of a new service/topic/partition, over 30 s."""
    return [
        QueueMetrics(
            service_name=f"svc-{n}",
            topic_name=f"topic-{n}",
            partition=n % 7,
            produced_offset=100 + n,
            consumed_offset=100,
            snapshot_time=T0 + timedelta(seconds=30 * n / count),
        )
        for n in range(count)
    ]


def dlq_flood(count: int) -> list[Message]:
    """``count`` DLQ events with ids and timestamps in their reasons, plus two real reasons."""
    out: list[Message] = []
    for n in range(count):
        at = T0 + timedelta(seconds=30 * n / count)
        reason = f"req-{n:06x}{n} failed at {at.isoformat()}" if n % 2 else f"unique reason {n}"
        if n % 10 == 0:
            reason = "missing field price" if n % 20 else "unknown venue"
        out.append(
            DlqEvent(
                trade_id=f"D{n}",
                service_name="validation-service",
                topic_name="trade-dlq",
                reason=reason,
                event_time=at,
            )
        )
    return out


def test_a_series_per_message_is_folded_counted_and_alerted_once() -> None:
    caps = Limits(series=50, dlq_reasons=5, alerts_per_rule=4)
    events = queue_flood(3000) + dlq_flood(2000)
    batches = raw_batches(events)
    before = dict(stats.COUNTERS.series_dropped)
    out = run_engine(batches, engine_config(sources=sources(batches), limits=caps))
    per_window = Counter((p.metric, p.window_start) for p in out.points)
    assert max(per_window.values()) <= 50 + 1  # the cap, plus one __other__ point
    lag = [p for p in out.points if p.metric == "queue_lag"]
    assert any(p.label("service") == OTHER for p in lag)
    exceeded = {
        (p.label("metric"), p.label("label"))
        for p in out.points
        if p.metric == "cardinality_exceeded"
    }
    # service and topic both have a value per snapshot; the tie goes to the first name.
    assert ("queue_lag", "service") in exceeded
    dropped = stats.COUNTERS.series_dropped.get("queue_lag", 0) - before.get("queue_lag", 0)
    assert dropped > 0
    registry = CollectorRegistry()
    registry.register(MetricsFlowCollector())
    assert 'rttm_series_dropped_total{metric="queue_lag"}' in generate_latest(registry).decode()
    # DLQ reasons: ids and times grouped, at most 5 named per topic, the two real ones kept.
    reasons = {p.label("reason") for p in out.points if p.metric == "dlq_depth_by_reason"}
    assert {"missing field price", "unknown venue"} <= reasons
    assert len(reasons - {OTHER}) <= 5
    depth = max(p.value for p in out.points if p.metric == "dlq_depth")
    assert depth == 2000  # every DLQ message counted, named or not
    # Alerts: at most 4 per rule, and the cardinality alert names the metric and the label.
    firing = Counter(t.rule for t in out.transitions if t.state == "firing")
    assert firing["CardinalityExceeded"] >= 1
    assert all(count <= 4 for rule, count in firing.items() if rule != "CardinalityExceeded")
    named = {
        (dict(t.labels)["metric"], dict(t.labels)["label"])
        for t in out.transitions
        if t.rule == "CardinalityExceeded" and t.state == "firing"
    }
    assert ("queue_lag", "service") in named
    # The folded lag is the worst of the folded partitions, never their sum: no false alert.
    lags = [p for p in lag if p.label("service") == OTHER]
    assert max(p.value for p in lags) <= 100 + 3000


def test_never_completed_trades_beyond_the_cap_are_counted_as_untracked() -> None:
    events: list[Message] = [
        TradeEvent(
            trade_id=f"N{n}",
            service_name="simulation-service",
            event_type="TRADE_CREATED",
            event_status="SUCCESS",
            event_time=T0 + timedelta(seconds=20 * n / 5000),
        )
        for n in range(5000)
    ]
    # Something later, so that the tracked trades' deadlines pass: they are found stuck.
    later = T0 + timedelta(seconds=200)
    events.append(
        DlqEvent(
            trade_id="late",
            service_name="validation-service",
            topic_name="trade-dlq",
            reason="x",
            event_time=later,
        )
    )
    batches = raw_batches(events)
    config = engine_config(sources=sources(batches), limits=Limits(trades=1000))
    out = run_engine(batches, config, load_rules())
    untracked = sum(p.value for p in out.points if p.metric == "trades_untracked")
    assert 4000 - 500 <= untracked <= 4000 + 500  # per shard: capacity 500, cut to 450
    stuck = len(out.stuck)
    assert stuck + untracked == 5000  # each trade either found stuck or reported untracked
