"""Metrics engine cost per event (``./dev bench``): decode, shard, windows, merge, rules.

A round runs the engine's steps (``rttm.metrics.flow.add_engine``) over 10 simulated
minutes of the default platform (faults included) as raw Kafka batches, in one Bytewax
worker, without broker or database: the engine's own cost, which must leave room for
50,000 events/s per process once Kafka consumption and the sink are added.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from pytest_benchmark.fixture import BenchmarkFixture

from rttm.alerts.rules import load_rules
from rttm.core.contracts import TradeEvent
from rttm.metrics import pipeline
from rttm.metrics.flow import add_engine
from rttm.metrics.merge import MetricsOutput
from rttm.metrics.shard import EngineConfig
from support.simulated import events, raw_batches, sources


def test_metrics_engine(benchmark: BenchmarkFixture) -> None:
    run = events(600, rate=30, seed=1)
    batches = raw_batches(run, partitions=6, batch=5_000)
    config = EngineConfig(pipeline.load(), sources=sources(batches))
    rules = load_rules()
    benchmark.group = f"metrics engine ({len(run):,} events per round)"
    benchmark.extra_info["items"] = len(run)

    def engine() -> int:
        flow = Dataflow("bench_metrics")
        raw = op.input("raw", flow, TestingSource(batches, batch_size=10))
        outputs: list[MetricsOutput] = []
        op.output("out", add_engine(raw, config, rules), TestingSink(outputs))
        run_main(flow)
        return int(sum(p.value for out in outputs for p in out.points if p.metric == "events"))

    counted = benchmark.pedantic(engine, rounds=5)
    assert counted == sum(1 for e in run if isinstance(e, TradeEvent))
