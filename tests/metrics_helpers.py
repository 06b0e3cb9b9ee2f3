"""Helpers of the metrics-engine tests: contract events → raw Kafka batches → the engine.

Events are laid out as Kafka would hold them (partition by the registry's message key,
offsets in order) and fed as raw batches through Bytewax's TestingSource, so the engine
runs exactly as in the flow, minus the broker and the database.
"""

from __future__ import annotations

import itertools
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka import Message as KafkaMessage

from rttm.alerts.rules import Rule, load_rules
from rttm.contracts import Message
from rttm.ingest.source import RawBatch
from rttm.metrics import pipeline
from rttm.metrics.flow import add_engine
from rttm.metrics.merge import MetricsOutput
from rttm.metrics.points import Point
from rttm.metrics.shard import EngineConfig
from rttm.registry import TOPICS

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_TOPIC_OF = {spec.struct: spec for spec in TOPICS}


def kafka_messages(events: Iterable[Message]) -> Iterator[tuple[str, bytes, bytes]]:
    """``(topic, key, value)`` of each event, as ``rttm.emit`` would publish it."""
    for event in events:
        spec = _TOPIC_OF[type(event)]
        yield spec.name, spec.key_of(event).encode(), msgspec.json.encode(event)


def raw_batches(events: Iterable[Message], partitions: int = 3, batch: int = 200) -> list[RawBatch]:
    """The events as Kafka holds them (partition by message key), cut into batches that
    interleave partitions round-robin, as the source reads them."""
    logs: dict[tuple[str, int], list[KafkaMessage]] = defaultdict(list)
    for topic, key, value in kafka_messages(events):
        part = zlib.crc32(key) % partitions
        log = logs[(topic, part)]
        log.append(KafkaMessage(topic=topic, partition=part, offset=len(log), key=key,
                                value=value, timestamp=(TIMESTAMP_CREATE_TIME, 0)))  # fmt: skip
    cut = {
        where: [log[i : i + batch] for i in range(0, len(log), batch)]
        for where, log in sorted(logs.items())
    }
    out = []
    for group in itertools.zip_longest(*cut.values()):
        for (topic, part), messages in zip(cut, group, strict=True):
            if messages:
                out.append(RawBatch(topic, part, messages, (messages[-1].offset() or 0) + 1))
    return out


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
    config = config or engine_config(sources=frozenset(f"{b.topic}/{b.partition}" for b in batches))
    op.output("out", add_engine(raw, config, load_rules() if rules is None else rules),
              TestingSink(outputs))  # fmt: skip
    run_main(flow)  # type: ignore[no-untyped-call]
    total = MetricsOutput()
    for out in outputs:
        total.points.extend(out.points)
        total.transitions.extend(out.transitions)
        total.stuck.extend(out.stuck)
        total.recovered.extend(out.recovered)
    return total


def series(points: Iterable[Point], metric: str, **labels: str) -> dict[datetime, float]:
    """``window start → value`` of one metric's points whose labels include ``labels``."""
    want = set(labels.items())
    return {p.window_start: p.value for p in points if p.metric == metric and want <= set(p.labels)}
