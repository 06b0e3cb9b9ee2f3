"""The platform simulator: valid messages, pipeline order, fault rates, reproducibility."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from rttm.core.contracts import DlqEvent, ErrorEvent, LogEvent, Message, QueueMetrics, TradeEvent
from rttm.core.decode import Accepted, decode_message
from rttm.core.errors import RttmError
from rttm.core.registry import TOPICS
from rttm.simulator import scenario as scenarios
from rttm.simulator.engine import Simulation

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TOPIC_OF = {spec.struct: spec.name for spec in TOPICS}
DEFAULT = scenarios.load()


def simulate(
    trades: int = 3_000, seed: int = 7, scenario: scenarios.Scenario = DEFAULT, rate: float = 500.0
) -> tuple[Simulation, list[tuple[float, Message]]]:
    sim = Simulation(scenario, seed=seed, start=START, rate=rate, trades=trades)
    return sim, list(sim.events())


def test_every_simulated_message_decodes_with_the_contracts() -> None:
    _, events = simulate()
    encoder = msgspec.json.Encoder()
    for _, event in events:
        result = decode_message(TOPIC_OF[type(event)], None, encoder.encode(event), 0, 0, 0)
        assert isinstance(result, Accepted), result
        assert result.event == event
    assert {type(e) for _, e in events} == {
        TradeEvent,
        QueueMetrics,
        DlqEvent,
        ErrorEvent,
        LogEvent,
    }


def test_events_come_in_time_order_with_matching_event_times() -> None:
    _, events = simulate()
    times = [at for at, _ in events]
    assert times == sorted(times)
    for at, event in events[:500]:
        moment = event.snapshot_time if isinstance(event, QueueMetrics) else event.event_time  # type: ignore[attr-defined]
        assert abs((moment - START).total_seconds() - at) < 1e-3


def test_each_trade_follows_the_pipeline() -> None:
    sim, events = simulate()
    order = {stage.success: i for i, stage in enumerate(DEFAULT.stages)}
    failures = {s.failure.event_type: i for i, s in enumerate(DEFAULT.stages) if s.failure}
    retries = {s.retry.event_type: i for i, s in enumerate(DEFAULT.stages) if s.retry}
    paths: dict[str, list[str]] = defaultdict(list)
    for _, event in events:
        if isinstance(event, TradeEvent):
            paths[event.trade_id].append(event.event_type)
    assert len(paths) == sim.created
    outcomes = {"completed": 0, "rejected": 0, "stuck": 0}
    for path in paths.values():
        stages = [order.get(t, failures.get(t, retries.get(t, -1))) for t in path]
        assert -1 not in stages, path
        assert stages == sorted(stages), path
        successes = [t for t in path if t in order]
        assert successes == [s.success for s in DEFAULT.stages][: len(successes)], path
        for n, event_type in enumerate(path):  # a retried error is followed by its success
            if event_type in retries:
                assert path[n + 1] == DEFAULT.stages[retries[event_type]].success, path
        if path[-1] == DEFAULT.stages[-1].success:
            outcomes["completed"] += 1
        elif path[-1] in failures:
            outcomes["rejected"] += 1
        else:
            outcomes["stuck"] += 1
    assert outcomes == {k: sim.tally.trades[k] for k in outcomes}


FAULTY = """
queue_partitions = 3
metrics_interval_s = 1.0
[[stages]]
name = "created"
service = "s0"
success = "CREATED"
target_queue = "q1"
latency = { median_ms = 1, p99_ms = 5 }
[[stages]]
name = "checked"
service = "s1"
success = "CHECKED"
source_queue = "q1"
target_queue = "q2"
latency = { median_ms = 2, p99_ms = 9 }
failure = { rate = 0.10, event_type = "CHECK_FAILED", message = "bad", dlq_topic = "q-dlq" }
[stages.retry]
rate = 0.05
event_type = "CHECK_RETRY"
error_type = "TIMEOUT"
error_message = "slow db"
[[stages]]
name = "done"
service = "s2"
success = "DONE"
source_queue = "q2"
latency = { median_ms = 2, p99_ms = 9 }
slow = { rate = 0.08, extra_ms = 100, log_level = "WARN", log_category = "SLOW", message = "slow" }
[stuck]
rate = 0.03
after_stage = "created"
[[lag]]
queue = "q2"
growth_per_s = 10.0
"""


@pytest.fixture
def faulty(tmp_path: Path) -> scenarios.Scenario:
    path = tmp_path / "faulty.toml"
    path.write_text(FAULTY)
    return scenarios.load(path)


def within(observed: int, trials: int, rate: float) -> bool:
    """``observed`` successes of ``trials`` draws at ``rate``, within 4 standard deviations."""
    mean = trials * rate
    return abs(observed - mean) <= 4 * math.sqrt(trials * rate * (1 - rate))


def test_fault_rates_are_within_tolerance_for_a_fixed_seed(faulty: scenarios.Scenario) -> None:
    sim, events = simulate(trades=20_000, seed=3, scenario=faulty, rate=2_000)
    faults, n = sim.tally.faults, 20_000
    assert within(faults["stuck after created"], n, 0.03)
    reach_checked = n - faults["stuck after created"]
    assert within(faults["checked:TIMEOUT"], reach_checked, 0.05)
    assert within(faults["checked:CHECK_FAILED"], reach_checked, 0.10)
    reach_done = reach_checked - faults["checked:CHECK_FAILED"]
    assert within(faults["done:SLOW"], reach_done, 0.08)
    dlq = [e for _, e in events if isinstance(e, DlqEvent)]
    assert len(dlq) == faults["checked:CHECK_FAILED"]
    assert {e.topic_name for e in dlq} == {"q-dlq"}
    errors = [e for _, e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == faults["checked:TIMEOUT"]
    logs = [e for _, e in events if isinstance(e, LogEvent)]
    assert len(logs) == faults["done:SLOW"]


def test_lagging_queue_reports_growing_lag(faulty: scenarios.Scenario) -> None:
    sim, events = simulate(trades=5_000, seed=3, scenario=faulty, rate=1_000)
    lag_by_tick: dict[float, int] = defaultdict(int)
    for at, event in events:
        if isinstance(event, QueueMetrics) and event.topic_name == "q2":
            lag_by_tick[at] += event.produced_offset - event.consumed_offset
    ticks = sorted(lag_by_tick)
    lags = [lag_by_tick[t] for t in ticks]
    assert len(lags) >= 4
    assert lags == sorted(lags)
    # 10 messages/s per partition, 3 partitions, less what was in flight anyway.
    assert lags[-1] >= 0.9 * 30 * ticks[-1]
    # Elsewhere lag is only trades in flight, plus stuck ones left in the queue they stopped at.
    q1 = [e for _, e in events if isinstance(e, QueueMetrics) and e.topic_name == "q1"]
    last = max(e.snapshot_time for e in q1)
    final = sum(e.produced_offset - e.consumed_offset for e in q1 if e.snapshot_time == last)
    assert final <= sim.tally.faults["stuck after created"] + 20


def test_same_seed_same_events_other_seed_other_events() -> None:
    _, first = simulate(trades=500, seed=11)
    _, again = simulate(trades=500, seed=11)
    _, other = simulate(trades=500, seed=12)
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            FAULTY.replace("queue_partitions = 3", "queue_partitions = 3\ncolour = 'red'"),
            "Object contains unknown field `colour`",
        ),
        (
            FAULTY.replace('after_stage = "created"', 'after_stage = "nowhere"'),
            "stuck.after_stage 'nowhere' is not a stage",
        ),
        (FAULTY.replace("rate = 0.10", "rate = 1.5"), "Expected `float` <= 1.0"),
        (
            FAULTY.replace('queue = "q2"\ngrowth', 'queue = "q9"\ngrowth'),
            "lag.queue 'q9' is not a queue",
        ),
    ],
)
def test_bad_scenarios_say_what_and_where(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RttmError, match=f"^{path}: ") as info:
        scenarios.load(path)
    assert error in str(info.value)
