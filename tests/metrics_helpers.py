"""Helpers of the metrics tests: contract events → raw Kafka batches → the engine; the flow.

Events are laid out as Kafka would hold them (partition by the registry's message key,
offsets in order) and fed as raw batches through Bytewax's TestingSource, so the engine
runs exactly as in the flow, minus the broker and the database. ``simulate``,
``run_metrics`` and ``metrics_rows`` run the whole flow as a process instead, against the
real broker and PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import psycopg
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from rttm.alerts.rules import Rule, load_rules
from rttm.core.config import KafkaSettings
from rttm.core.contracts import TradeEvent
from rttm.core.stream.source import RawBatch
from rttm.metrics import pipeline
from rttm.metrics.flow import add_engine
from rttm.metrics.merge import CORRECTED, MetricsOutput
from rttm.metrics.points import Point
from rttm.metrics.shard import EngineConfig
from rttm.simulator import scenario
from rttm.simulator.engine import Simulation
from support.kafka import produce
from support.simulated import T0, kafka_messages, sources
from tests.ingest_helpers import REPO


def engine_config(**overrides: object) -> EngineConfig:
    fields: dict[str, object] = {
        "pipeline": pipeline.load(),
        "window_s": 10.0,
        "lateness_s": 5.0,
        "shards": 2,
    }
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
    op.output(
        "out",
        add_engine(raw, config, load_rules() if rules is None else rules),
        TestingSink(outputs),
    )
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


START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def simulate(kafka: KafkaSettings, seconds: float, rate: float) -> list[Any]:
    """Produce a simulated run (default scenario: faults included) and return its events."""
    run = Simulation(scenario.load(), seed=7, start=START, rate=rate, duration=seconds)
    events = [event for _, event in run.events()]
    produce(kafka.brokers, kafka_messages(events))
    return events


def run_metrics(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.metrics", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def metrics_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT metric, window_start, labels::text, value FROM rttm_metrics"
            " ORDER BY metric, window_start, labels::text"
        ).fetchall()


def created_by(service: str, count: int, at: float) -> list[TradeEvent]:
    """``count`` distinct trades created by ``service`` at ``T0 + at`` seconds."""
    return [
        TradeEvent(
            event_id=f"{service}-{at}-{n}",
            trade_id=f"{service}{at}{n}",
            service_name=service,
            event_type="TRADE_CREATED",
            event_status="SUCCESS",
            event_time=T0 + timedelta(seconds=at),
        )
        for n in range(count)
    ]
