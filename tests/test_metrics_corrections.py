"""Late events correct their closed windows; repeats are dropped as the tables drop them.

The engine runs as in the flow, on raw batches through Bytewax's testing source (the flow
against the real broker and PostgreSQL is in ``test_metrics_convergence``). Here: what a
correction rewrites, the horizon, repeats by ``event_id``, and a recovery snapshot taken
while corrections wait to be sent.
"""

from __future__ import annotations

import copy
import pickle
import uuid
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from rttm.alerts.rules import load_rules
from rttm.core.contracts import DlqEvent, ErrorEvent, TradeEvent
from rttm.core.ids import uuid7
from rttm.core.stream.source import RawBatch
from rttm.metrics import stats
from rttm.metrics.events import facts_by_shard
from rttm.metrics.limits import Limits
from rttm.metrics.merge import MergeLogic, MetricsOutput
from rttm.metrics.progress import describe
from rttm.metrics.prometheus import MetricsFlowCollector
from rttm.metrics.repeats import NO_ID, Repeats, id_key
from rttm.metrics.shard import ShardLogic, ShardReport
from support.simulated import T0, raw_batches, sources
from tests.metrics_helpers import created_by, engine_config, run_engine, series, stored

SERVICE = "simulation-service"


def trade(trade_id: str, event_type: str, at: float, event_id: str | None = None) -> TradeEvent:
    return TradeEvent(
        event_id=event_id,
        trade_id=trade_id,
        service_name=SERVICE,
        event_type=event_type,
        event_status="SUCCESS",
        event_time=T0 + timedelta(seconds=at),
    )


def created(count: int, start: float, every: float, prefix: str) -> list[TradeEvent]:
    """``count`` trades created ``every`` s apart from ``start``, each with an event_id."""
    return [
        trade(f"{prefix}{n}", "TRADE_CREATED", start + n * every, f"{prefix}-id-{n}")
        for n in range(count)
    ]


def window(at: float) -> datetime:
    return T0 + timedelta(seconds=at // 10 * 10)


def dlq(event_id: str, at: float) -> DlqEvent:
    return DlqEvent(
        event_id=event_id,
        trade_id="X",
        service_name=SERVICE,
        reason="bad",
        topic_name="trades.dlq",
        event_time=T0 + timedelta(seconds=at),
    )


def error(event_id: str, at: float) -> ErrorEvent:
    return ErrorEvent(
        event_id=event_id,
        trade_id="X",
        service_name=SERVICE,
        error_type="Timeout",
        error_message="slow",
        event_time=T0 + timedelta(seconds=at),
    )


def test_a_correction_rewrites_counts_rates_ratios_and_latency_of_its_window() -> None:
    on_time = [
        *created(60, 0.0, 1.0, "A"),
        *(dlq(f"d{n}", n * 10 + 5) for n in range(6)),
        *(error(f"e{n}", n * 10 + 5) for n in range(6)),
    ]
    late = [
        *created(5, 2.0, 0.5, "L"),  # five more trades created in the first window
        trade("A1", "CAPTURE_SUCCESS", 1.4, "A1-capture"),  # a hop: latency of the window
        dlq("late-d", 4.0),
        error("late-e", 4.0),
    ]
    # Every on-time batch first, then the late ones (their offsets do not matter here).
    batches = raw_batches(on_time, partitions=1, batch=20) + raw_batches(late, partitions=1)
    out = run_engine(batches, engine_config(sources=sources(batches), shards=1))
    points = stored(out)
    first = window(0)
    assert series(out.points, "trades_started")[first] == 10  # what was known at the time
    assert series(points, "trades_started")[first] == 15
    assert series(points, "events", service=SERVICE, event_type="TRADE_CREATED")[first] == 15
    assert series(points, "events", event_type="CAPTURE_SUCCESS")[first] == 1
    assert series(points, "tps", service=SERVICE)[first] == 1.6
    assert series(out.points, "dlq_events", topic="trades.dlq")[first] == 1
    assert series(points, "dlq_events", topic="trades.dlq")[first] == 2
    assert series(points, "dlq_ratio")[first] == 2 / 15
    assert series(points, "error_ratio", service=SERVICE)[first] == 2 / 16
    assert series(points, "hop_latency_ms", quantile="p50")[first] > 0
    assert sum(p.value for p in points if p.metric == "corrected_events") == len(late)
    assert not series(points, "late_events")


def test_alerts_are_not_evaluated_again_on_a_corrected_window(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "Busy"\nmetric = "trades_started"\nop = ">"\n'
        'threshold = 12\nseverity = "info"\nsummary = "busy"\n'
    )
    on_time = created(60, 0.0, 1.0, "A")
    late = created(5, 2.0, 0.5, "L")  # window 0 becomes 15 started: above 12, too late
    batches = raw_batches(on_time, partitions=1) + raw_batches(late, partitions=1)
    config = engine_config(sources=sources(batches), shards=1)
    out = run_engine(batches, config, load_rules(rules))
    assert series(stored(out), "trades_started")[window(0)] == 15
    assert out.transitions == []  # decided on the 10 known when window 0 was finalized
    # The same events on time do fire: the rule is not what keeps it quiet.
    in_order: list[TradeEvent] = sorted([*on_time, *late], key=lambda e: e.event_time)
    batches = raw_batches(in_order, partitions=1)
    fired = run_engine(
        batches, engine_config(sources=sources(batches), shards=1), load_rules(rules)
    )
    assert [t.state for t in fired.transitions][:1] == ["firing"]


def test_repeats_of_an_event_id_are_dropped_and_counted_as_repeated() -> None:
    first = created(30, 0.0, 1.0, "R")
    again = created(10, 0.0, 1.0, "R")  # the same ids again, as a producer retry sends them
    anonymous = [trade("N1", "TRADE_CREATED", 5.0), trade("N1", "TRADE_CREATED", 5.0)]
    batches = raw_batches([*first, *again, *anonymous], partitions=1, batch=15)
    before = copy.copy(stats.COUNTERS)
    out = run_engine(batches, engine_config(sources=sources(batches), shards=1))
    points = stored(out)
    # Without an event_id each delivery is a row of its own (keyed by Kafka coordinates).
    assert sum(series(points, "trades_started").values()) == 30 + 2
    assert sum(series(points, "repeated_events", topic="rttm.trade.events").values()) == 10
    # The flow's own port and live line count them too.
    assert stats.COUNTERS.repeated - before.repeated == 10
    registry = CollectorRegistry()
    registry.register(MetricsFlowCollector())
    exposed = generate_latest(registry).decode()
    assert f"rttm_metrics_repeats_dropped_total {float(stats.COUNTERS.repeated)}" in exposed
    assert f"repeats {stats.COUNTERS.repeated:,}" in describe(stats.COUNTERS, 0.0)


def test_ids_of_uuids_whose_last_bits_are_the_hosts_are_hashed_not_cut() -> None:
    random_ids = [str(uuid.uuid4()) for _ in range(1000)] + [uuid7() for _ in range(1000)]
    host_ids = [str(uuid.uuid1()) for _ in range(1000)]  # the same node and clock sequence
    assert {id_key(text) for text in random_ids} >= {
        int(text[19:].replace("-", ""), 16) for text in random_ids
    }
    assert len({id_key(text) for text in host_ids}) == len(host_ids)
    assert len({id_key(f"order-{n}") for n in range(1000)}) == 1000
    errors = [error(text, 1.0) for text in host_ids[:100]]
    out = run_engine(raw_batches(errors, partitions=1), engine_config(shards=1))
    assert series(out.points, "errors", service=SERVICE)[window(0)] == 100


def test_the_same_trade_event_id_at_another_time_is_another_event() -> None:
    # rttm_trade_events is keyed by (dedupe_key, event_time): so is the engine.
    assert id_key("x", 1.0) != id_key("x", 2.0)
    assert id_key("x", 1.0) == id_key("x", 1.0) != NO_ID
    assert id_key(None, 1.0) == NO_ID


def test_repeats_memory_is_bounded_and_survives_a_snapshot() -> None:
    memory = Repeats(capacity=1000)
    for n in range(3000):
        assert memory.fresh(id_key(f"id-{n}"), float(n // 100 * 10))
        memory.seal_before(float(n // 100 * 10))
    assert len(memory) <= 1000
    assert not memory.fresh(id_key("id-2999"), 290.0)  # the newest are kept
    restored = pickle.loads(pickle.dumps(memory))  # noqa: S301 - made right here
    assert len(restored) == len(memory)
    assert not restored.fresh(id_key("id-2999"), 290.0)
    restored.forget_before(300.0)
    assert len(restored) == 0
    assert restored.fresh(id_key("id-2999"), 290.0)


def test_closed_windows_keep_their_ids_sealed_and_still_recognise_repeats() -> None:
    memory = Repeats()
    keys = [id_key(f"e{n}") for n in range(100)]
    for key in keys[:50]:
        assert memory.fresh(key, 0.0)
    memory.seal_before(10.0)  # window 0 closed: its keys become a sorted array
    assert not memory.open
    assert all(not memory.fresh(key, 0.0) for key in keys[:50])  # a late repeat
    assert all(memory.fresh(key, 0.0) for key in keys[50:])  # a late new event
    assert all(not memory.fresh(key, 0.0) for key in keys)
    assert list(memory.sealed[0.0]) == sorted(keys)
    assert memory.fresh(keys[0], 10.0)  # another window: another event
    assert len(pickle.loads(pickle.dumps(memory))) == len(memory) == 101  # noqa: S301


def _reports(logic: ShardLogic, batches: list[RawBatch]) -> list[ShardReport]:
    reports: list[ShardReport] = []
    for batch in batches:
        for _, chunk in facts_by_shard(batch, 1):
            reports += logic.on_item(chunk)[0]
    return reports


def _merged(merge: MergeLogic, reports: list[ShardReport]) -> list[MetricsOutput]:
    return [out for report in reports for out in merge.on_item(report)[0]]


def test_corrections_pending_in_a_snapshot_land_once_after_a_resume() -> None:
    on_time = created(60, 0.0, 1.0, "S")
    late_a, late_b = created(3, 1.0, 0.5, "La"), created(4, 3.0, 0.5, "Lb")
    batches = [
        *raw_batches(on_time, partitions=1, batch=60),
        *raw_batches(late_a, 1),
        *raw_batches(late_b, 1),
    ]
    config = engine_config(sources=sources(batches), shards=1)
    shard, merge = ShardLogic(config, None), MergeLogic(config, [], None)
    outputs = _merged(merge, _reports(shard, batches[:2]))  # the first correction is sent
    assert [c.window_start for out in outputs for c in out.corrections] == [window(0)]
    outputs += _merged(merge, _reports(shard, batches[2:]))  # within the tick: held back
    assert shard._state.corrections
    saved_shard, saved_merge = shard.snapshot(), merge.snapshot()
    # Killed here. The resumed steps send and apply the pending correction exactly once.
    shard, merge = ShardLogic(config, saved_shard), MergeLogic(config, [], saved_merge)
    assert shard._state.corrections
    outputs += _merged(merge, shard.on_eof()[0])
    outputs += merge.on_eof()[0]
    total = MetricsOutput()
    for out in outputs:
        total.points += out.points
        total.corrections += out.corrections
    assert series(stored(total), "trades_started")[window(0)] == 10 + 3 + 4
    assert not ShardLogic(config, shard.snapshot())._state.corrections


def test_every_count_converges_to_a_count_of_the_distinct_events() -> None:
    on_time = created(120, 0.0, 0.5, "C")
    late = created(40, 0.0, 1.5, "D")  # arrive after a minute of newer events
    repeats = on_time[::7] + late[::5]
    batches = raw_batches([*on_time, *late, *repeats], partitions=2, batch=25)
    out = run_engine(batches, engine_config(sources=sources(batches)))
    truth = Counter(window(e.event_time.timestamp() - T0.timestamp()) for e in on_time + late)
    assert series(stored(out), "trades_started") == {w: float(n) for w, n in truth.items()}


def test_raising_the_horizon_across_a_resume_corrects_only_what_was_kept() -> None:
    on_time = created(60, 0.0, 1.0, "H")  # windows 0 to 50 s
    too_old, recent = created(2, 1.0, 0.5, "O"), created(3, 41.0, 0.5, "R")
    batches = [
        *raw_batches(on_time, partitions=1, batch=60),
        *raw_batches(too_old, 1),
        *raw_batches(recent, 1),
    ]
    short = engine_config(sources=sources(batches), shards=1, correction_s=30.0)
    shard, merge = ShardLogic(short, None), MergeLogic(short, [], None)
    outputs = _merged(merge, _reports(shard, batches[:1]))
    saved_shard, saved_merge = shard.snapshot(), merge.snapshot()
    # Restarted with a 1 h horizon: window 0 was not kept, its ids were not remembered.
    longer = replace(short, correction_s=3600.0)
    shard, merge = ShardLogic(longer, saved_shard), MergeLogic(longer, [], saved_merge)
    outputs += _merged(merge, _reports(shard, batches[1:]))
    outputs += _merged(merge, shard.on_eof()[0]) + merge.on_eof()[0]
    total = MetricsOutput()
    for out in outputs:
        total.points += out.points
        total.corrections += out.corrections
        total.uncounted += out.uncounted
    started = series(stored(total), "trades_started")
    assert started[window(0)] == 10  # left alone: not overwritten with the late events only
    assert started[window(40)] == 10 + 3  # within what was kept: corrected
    assert [(u.reason, u.time) for u in total.uncounted] == [
        ("late", e.event_time.timestamp()) for e in too_old
    ]


def test_a_correction_under_the_series_cap_leaves_no_stale_row() -> None:
    on_time = [*created_by("A", 5, 1.0), *created_by("B", 4, 1.0), *created_by("C", 1, 1.0)]
    on_time += [event for n in range(1, 7) for event in created_by("A", 1, 10.0 * n + 5)]
    late = created_by("C", 6, 2.0)  # C overtakes B: B is folded into __other__ now
    batches = raw_batches(on_time, partitions=1) + raw_batches(late, partitions=1)
    caps = Limits(series=2)
    out = run_engine(batches, engine_config(sources=sources(batches), shards=1, limits=caps))
    tps = {
        p.label("service"): p.value
        for p in stored(out)
        if p.metric == "tps" and p.window_start == window(0)
    }
    assert tps == {"A": 0.5, "C": 0.7, "__other__": 0.4}  # B once, under __other__
    assert sum(tps.values()) == 1.6
