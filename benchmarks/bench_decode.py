"""Decode + validate cost per message and topic, valid and invalid (``./dev bench``)."""

from __future__ import annotations

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka import Message as KafkaMessage
from pytest_benchmark.fixture import BenchmarkFixture

from rttm.core.decode import Accepted, Rejected, decode_message
from rttm.core.registry import TOPICS
from rttm.core.stream.source import RawBatch
from rttm.ingest.chunks import split_batch
from support import workload
from support.data import messages

BATCH = 10_000


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
@pytest.mark.parametrize("topic", [spec.name for spec in TOPICS])
def test_decode(benchmark: BenchmarkFixture, topic: str, valid: bool) -> None:
    benchmark.group = "decode (10k messages per round)"
    benchmark.extra_info["items"] = BATCH
    batch = messages(topic, BATCH, invalid=not valid)
    expected = Accepted if valid else Rejected

    def run() -> int:
        return sum(
            isinstance(decode_message(topic, None, value, 0, offset, 0), expected)
            for offset, value in enumerate(batch)
        )

    assert benchmark(run) == BATCH


def test_split_batch(benchmark: BenchmarkFixture) -> None:
    """The ingestion's hot path: raw Kafka messages to per-shard rows, one topic per batch."""
    benchmark.group = "decode to shard rows (split_batch, workload mix)"
    work = workload.build(BATCH)
    by_topic: dict[str, list[KafkaMessage]] = {}
    for offset, (topic, key, value) in enumerate(work.messages):
        by_topic.setdefault(topic, []).append(
            KafkaMessage(
                topic=topic,
                partition=0,
                offset=offset,
                key=key,
                value=value,
                timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_000 + offset),
            )
        )
    batches = [RawBatch(topic, 0, items, len(work.messages)) for topic, items in by_topic.items()]
    benchmark.extra_info["items"] = work.total
    # Duplicates are the dedupe step's business: every message here becomes a row.
    expected = work.total

    def run() -> int:
        return sum(
            len(rows)
            for batch in batches
            for _, chunk in split_batch(batch)
            for rows in chunk.tables.values()
        )

    assert benchmark(run) == expected
