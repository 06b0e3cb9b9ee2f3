"""Helpers of the metrics-engine tests: contract events → raw Kafka batches → the engine.

Events are laid out as Kafka would hold them (partition by the registry's message key,
offsets in order) and fed as raw batches through Bytewax's TestingSource, so the engine
runs exactly as in the flow, minus the broker and the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from benchmarks.simulated import sources
from rttm.alerts.rules import Rule, load_rules
from rttm.ingest.source import RawBatch
from rttm.metrics import pipeline
from rttm.metrics.flow import add_engine
from rttm.metrics.merge import CORRECTED, MetricsOutput
from rttm.metrics.points import Point
from rttm.metrics.shard import EngineConfig


def engine_config(**overrides: object) -> EngineConfig:
    fields: dict[str, object] = {"pipeline": pipeline.load(), "window_s": 10.0,
                                 "lateness_s": 5.0, "shards": 2}  # fmt: skip
    fields.update(overrides)
    return EngineConfig(**fields)  # type: ignore[arg-type]


def run_engine(
    batches: Sequence[RawBatch],
    config: EngineConfig | None = None,
    rules: Iterable[Rule] | None = None,
) -> MetricsOutput:
    """Every output of the engine over ``batches`` (a bounded run), merged into one."""
    flow = Dataflow("metrics_test")
    raw = op.input("raw", flow, TestingSource(list(batches), batch_size=50))
    outputs: list[MetricsOutput] = []
    config = config or engine_config(sources=sources(batches))
    op.output("out", add_engine(raw, config, load_rules() if rules is None else rules),
              TestingSink(outputs))  # fmt: skip
    run_main(flow)  # type: ignore[no-untyped-call]
    total = MetricsOutput()
    for out in outputs:
        total.points.extend(out.points)
        total.transitions.extend(out.transitions)
        total.stuck.extend(out.stuck)
        total.recovered.extend(out.recovered)
        total.corrections.extend(out.corrections)
        total.uncounted.extend(out.uncounted)
    return total


def stored(out: MetricsOutput) -> list[Point]:
    """The points as the sink leaves them: each correction replaces its window's counts."""
    rows = {(p.metric, p.labels, p.window_start): p for p in out.points}
    for correction in out.corrections:
        for key, point in list(rows.items()):
            if point.window_start == correction.window_start and (
                point.metric in CORRECTED
                or (point.metric == "cardinality_exceeded" and point.label("metric") in CORRECTED)
            ):
                del rows[key]
        rows.update({(p.metric, p.labels, p.window_start): p for p in correction.points})
    return list(rows.values())


def series(points: Iterable[Point], metric: str, **labels: str) -> dict[datetime, float]:
    """``window start → value`` of one metric's points whose labels include ``labels``."""
    want = set(labels.items())
    return {p.window_start: p.value for p in points if p.metric == metric and want <= set(p.labels)}
