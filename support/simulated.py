"""Simulated platform runs as Kafka data: the events of a seeded run, as messages or batches.

The metrics benchmarks and tests feed the engine what the simulator would have published:
events laid out as Kafka holds them (partition by the registry's message key, offsets in
order) and read in round-robin batches, as the source reads them.
"""

from __future__ import annotations

import itertools
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import msgspec
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka import Message as KafkaMessage

from rttm.core.contracts import Message
from rttm.core.registry import TOPICS
from rttm.core.stream.source import RawBatch
from rttm.simulator import scenario
from rttm.simulator.engine import Simulation

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_SPEC_OF = {spec.struct: spec for spec in TOPICS}


def events(seconds: float, rate: float, seed: int, *, clean: bool = False) -> list[Message]:
    """A simulated run of the default platform (``clean``: without its injected faults)."""
    return list(stream(rate, seed, seconds=seconds, clean=clean))


def stream(
    rate: float,
    seed: int,
    *,
    seconds: float | None = None,
    trades: int | None = None,
    clean: bool = False,
) -> Iterator[Message]:
    """The events of ``events`` one at a time, in time order, none held once yielded.

    The run stops creating trades after ``seconds`` of simulated time or ``trades`` trades
    (at least one of them), as :class:`Simulation` does.
    """
    plan = scenario.load()
    if clean:  # no stuck trades, no lagging consumer
        plan = msgspec.structs.replace(plan, stuck=None, lag=())
    run = Simulation(plan, seed=seed, start=T0, rate=rate, duration=seconds, trades=trades)
    for _, event in run.events():
        yield event


def kafka_messages(run: Iterable[Message]) -> Iterator[tuple[str, bytes, bytes]]:
    """``(topic, key, value)`` of each event, as ``rttm.emit`` would publish it."""
    for event in run:
        spec = _SPEC_OF[type(event)]
        yield spec.name, spec.key_of(event).encode(), msgspec.json.encode(event)


def raw_batches(run: Iterable[Message], partitions: int = 3, batch: int = 200) -> list[RawBatch]:
    """The events in ``partitions`` per topic, cut into batches of up to ``batch`` messages
    that interleave the partitions round-robin."""
    logs: dict[tuple[str, int], list[KafkaMessage]] = defaultdict(list)
    for topic, key, value in kafka_messages(run):
        part = zlib.crc32(key) % partitions
        log = logs[(topic, part)]
        log.append(
            KafkaMessage(
                topic=topic,
                partition=part,
                offset=len(log),
                key=key,
                value=value,
                timestamp=(TIMESTAMP_CREATE_TIME, 0),
            )
        )
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


def sources(batches: Iterable[RawBatch]) -> frozenset[str]:
    """The source partitions ("topic/partition") the batches come from."""
    return frozenset(f"{b.topic}/{b.partition}" for b in batches)
