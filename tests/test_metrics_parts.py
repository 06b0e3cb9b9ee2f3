"""The metrics engine's parts on their own: pipeline files, the latency sketch, settings."""

from __future__ import annotations

import math
import pickle
import random
from dataclasses import replace
from pathlib import Path

import pytest

from rttm.core.config import ConfigError
from rttm.core.errors import RttmError
from rttm.metrics import pipeline
from rttm.metrics.merge import MergeLogic, MergeState
from rttm.metrics.queues import QueueTracker
from rttm.metrics.settings import engine_config
from rttm.metrics.shard import STATE_FORMAT, EngineConfig, ShardLogic
from rttm.metrics.sketch import ACCURACY, Sketch
from rttm.metrics.windows import MAX_EMPTY_WINDOWS, STALL, past_gap
from rttm.simulator import scenario


def test_default_pipeline_is_the_simulated_platform() -> None:
    default = pipeline.load()
    plan = scenario.load()
    assert [(s.name, s.service) for s in default.stages] == [
        (s.name, s.service) for s in plan.stages
    ]
    for index, stage in enumerate(plan.stages):
        assert default.moves[stage.success] == (index, True)
        if stage.failure is not None:
            assert default.moves[stage.failure.event_type] == (index, False)
            assert stage.failure.event_type in default.rejected  # failures end the trade
        if stage.retry is not None:
            assert default.moves[stage.retry.event_type] == (index, False)
            assert stage.retry.event_type not in default.rejected  # retried, not terminal
    assert default.completed == {plan.stages[-1].success}
    assert default.first_events == {plan.stages[0].success}


DEFAULT = (Path(pipeline.__file__).parent / "default_pipeline.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ('stuck_after = "30s"', 'stuck_after = "soon"', "stuck_after: invalid duration 'soon'"),
        ('name = "ranked"', 'name = "positioned"', "stage names must be unique"),
        (
            'success = ["LEADERBOARD_UPDATED"]',
            'success = ["TRADE_CREATED"]',
            "stages[5] (ranked): event type TRADE_CREATED already belongs to stage created",
        ),
        (
            'completed = ["LEADERBOARD_UPDATED"]',
            'completed = ["NOPE"]',
            "terminal: NOPE belong to no stage",
        ),
        ('retention = "3d"', "colour = 1", "Object contains unknown field `colour`"),
    ],
)
def test_bad_pipeline_files_say_what_and_where(
    tmp_path: Path, old: str, new: str, error: str
) -> None:
    path = tmp_path / "pipeline.toml"
    assert old in DEFAULT
    path.write_text(DEFAULT.replace(old, new, 1))
    with pytest.raises(RttmError, match=rf"^{path}: ") as info:
        pipeline.load(path)
    assert error in str(info.value)


def test_missing_pipeline_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RttmError, match=r"cannot read pipeline .*nope\.toml: No such file"):
        pipeline.load(tmp_path / "nope.toml")


def test_sketch_quantiles_are_within_its_accuracy_and_merging_equals_one_sketch() -> None:
    rng = random.Random(2)
    values = [rng.lognormvariate(3, 1.2) for _ in range(20_000)]
    whole = Sketch.of(values)
    left, right = Sketch.of(values[:7_000]), Sketch.of(values[7_000:])
    left.merge(right)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = ordered[max(1, math.ceil(q * len(ordered))) - 1]
        assert whole.quantile(q) == pytest.approx(exact, rel=ACCURACY)
        assert left.quantile(q) == whole.quantile(q)
    assert pickle.loads(pickle.dumps(whole)).quantile(0.99) == whole.quantile(0.99)  # noqa: S301
    assert Sketch.of([0.0, 0.0, 5.0]).quantile(0.5) == 0.0
    with pytest.raises(ValueError, match="empty sketch"):
        Sketch().quantile(0.5)


def test_sketch_keeps_sub_millisecond_latencies_and_zeroes_only_tiny_or_negative_ones() -> None:
    for value in (0.0011, 0.005, 0.2, 0.9, 1.0, 3.0, 86_400_000.0):
        assert Sketch.of([value]).quantile(0.5) == pytest.approx(value, rel=ACCURACY), value
    for value in (0.001, 0.0009, 0.0, -5.0):  # at or below 1 µs, or a clock step back
        assert Sketch.of([value]).quantile(0.5) == 0.0, value
    sketch = Sketch.of([0.0, 0.5, 7.0])
    assert [sketch.quantile(q) for q in (0.0, 0.34, 0.67, 1.0)] == pytest.approx(
        [0.0, 0.5, 7.0, 7.0], rel=ACCURACY
    )
    assert sketch.count == 3


def test_sketch_size_depends_on_the_spread_of_values_not_their_number() -> None:
    spread = [10 ** (2 * n / 10_000) for n in range(10_001)]  # 1 ms to 100 ms, densely
    assert 225 <= len(Sketch.of(spread).buckets) <= 235  # about 230 per factor of 100
    assert len(Sketch.of(spread * 10).buckets) == len(Sketch.of(spread).buckets)


def test_engine_settings_from_the_environment() -> None:
    config = engine_config(
        {"RTTM_METRICS_WINDOW": "1m", "RTTM_METRICS_LATENESS": "2s", "RTTM_METRICS_SHARDS": "4"}
    )
    assert (config.window_s, config.lateness_s, config.shards) == (60.0, 2.0, 4)
    with pytest.raises(ConfigError, match="RTTM_METRICS_WINDOW: invalid duration 'ten'"):
        engine_config({"RTTM_METRICS_WINDOW": "ten"})
    for bad in ("500ms", "2.5s"):
        with pytest.raises(ConfigError, match="RTTM_METRICS_WINDOW must be a whole number"):
            engine_config({"RTTM_METRICS_WINDOW": bad})
    with pytest.raises(ConfigError, match="RTTM_METRICS_SHARDS must be an integer from 1 to 64"):
        engine_config({"RTTM_METRICS_SHARDS": "0"})
    assert engine_config({}).correction_s == 3600.0
    assert engine_config({"RTTM_METRICS_CORRECTION": "0s"}).correction_s == 0.0
    with pytest.raises(ConfigError, match=r"RTTM_METRICS_CORRECTION must be from 0s .* to 1d"):
        engine_config({"RTTM_METRICS_CORRECTION": "2d"})
    with pytest.raises(ConfigError, match="RTTM_METRICS_CORRECTION: invalid duration"):
        engine_config({"RTTM_METRICS_CORRECTION": "an hour"})


def test_a_consumer_stalled_for_hours_reports_how_long_not_the_snapshots_kept() -> None:
    queues = QueueTracker()
    for at in range(0, 7_200, 5):  # two hours, offset stuck at 1,000 with a growing lag
        queues.add(("pms-core", "trade-valid", 0, 1_000 + at, 1_000, float(at)))
        if at % 600 == 0:
            queues.gauges(float(at))  # prunes old snapshots as the flow does
    (gauge,) = queues.gauges(7_200.0)
    assert gauge.status == STALL
    assert gauge.lag_seconds == pytest.approx(7_200.0)


def test_recovered_state_from_another_window_or_shard_count_is_refused() -> None:
    config = EngineConfig(pipeline.load())
    snapshot = ShardLogic(config, None).snapshot()
    assert ShardLogic(config, snapshot).snapshot()  # same layout: fine
    for other in (replace(config, window_s=60.0), replace(config, shards=3)):
        with pytest.raises(RttmError, match="recovery store's shard state was made with a 10s"):
            ShardLogic(other, snapshot)


def test_recovered_state_of_an_older_format_is_refused_in_one_line() -> None:
    config = EngineConfig(pipeline.load())
    old = ShardLogic(config, None)._state
    del old.__dict__["format"]
    reads = f"shard state has format 1, this RTTM reads {STATE_FORMAT}: start a"
    with pytest.raises(RttmError, match=reads):
        ShardLogic(config, pickle.dumps(old))
    merge = MergeState(layout=config.layout())
    del merge.__dict__["format"]
    with pytest.raises(RttmError, match="merge state has format 1"):
        MergeLogic(config, [], pickle.dumps(merge))


def test_a_stretch_without_data_is_skipped_only_when_worth_it() -> None:
    held = [0.0, 100.0, 40_000.0]
    # Nothing expected: any gap is skipped, to the next window with data.
    assert past_gap(10.0, held, 50_000.0, 10.0, busy=False) == 100.0
    # Something expected (lag, stuck trades, services): short gaps are emitted one by one...
    assert past_gap(10.0, held, 50_000.0, 10.0, busy=True) == 10.0
    # ... and only a stretch of MAX_EMPTY_WINDOWS windows or more is skipped.
    assert past_gap(110.0, held, 50_000.0, 10.0, busy=True) == 40_000.0
    assert MAX_EMPTY_WINDOWS * 10.0 <= 40_000.0 - 110.0
    # Never past the window of ``until``; at ``until``'s own window there is nothing to skip.
    assert past_gap(110.0, held, 205.0, 10.0, busy=False) == 200.0
    assert past_gap(200.0, held, 205.0, 10.0, busy=False) == 200.0
