"""The batched hot path (``split_batch``) agrees with ``decode_message`` on every input."""

from __future__ import annotations

import msgspec
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE
from confluent_kafka import Message as KafkaMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from rttm.core.decode import Accepted, decode_message
from rttm.core.registry import TOPICS
from rttm.core.stream.shards import shard_keys, shard_of
from rttm.core.stream.source import RawBatch
from rttm.ingest.chunks import split_batch
from rttm.ingest.rows import table_row
from tests.samples import SAMPLE_MESSAGES, encode
from tests.strategies import JSON_VALUES, events

TOPIC_NAMES = [spec.name for spec in TOPICS]


@st.composite
def values(draw: st.DrawFn, topic: str) -> bytes | None:
    """Valid events, mutated examples, truncations, arbitrary bytes, tombstones."""
    spec = next(s for s in TOPICS if s.name == topic)
    kind = draw(st.sampled_from(["valid", "mutated", "cut", "bytes", "none"]))
    if kind == "valid":
        return msgspec.json.encode(draw(events(spec.struct)))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    payload = dict(SAMPLE_MESSAGES[topic])
    payload[draw(st.sampled_from(sorted(payload)))] = draw(JSON_VALUES)
    raw = encode(payload)
    return raw[: draw(st.integers(0, len(raw)))] if kind == "cut" else raw


@st.composite
def batches(draw: st.DrawFn) -> RawBatch:
    topic = draw(st.sampled_from(TOPIC_NAMES))
    partition = draw(st.integers(0, 7))
    count = draw(st.integers(1, 12))
    first = draw(st.integers(0, 2**40))
    messages = []
    for offset in range(first, first + count):
        stamped = draw(st.booleans())
        messages.append(
            KafkaMessage(
                topic=topic,
                partition=partition,
                offset=offset,
                key=draw(st.none() | st.binary(max_size=8)),
                value=draw(values(topic)),
                timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_000 + offset)
                if stamped
                else (TIMESTAMP_NOT_AVAILABLE, 0),
            )
        )
    return RawBatch(topic, partition, messages, first + count)


@settings(max_examples=500)
@given(batches(), st.integers(1, 5))
def test_split_batch_matches_decode_message(batch: RawBatch, shards: int) -> None:
    expected: list[dict[str, list[tuple[object, ...]]]] = [{} for _ in range(shards)]
    for message in batch.messages:
        kind, stamp = message.timestamp()
        result = decode_message(
            batch.topic,
            message.key(),
            message.value(),
            batch.partition,
            message.offset() or 0,
            None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
        )
        table, row = table_row(result)
        shard = (
            shard_of(result.spec.key_of(result.event), shards)
            if isinstance(result, Accepted)
            else batch.partition % shards
        )
        expected[shard].setdefault(table, []).append(row)
    got = split_batch(batch, shards)
    assert [key for key, _ in got] == list(shard_keys(shards))
    for (_, chunk), tables in zip(got, expected, strict=True):
        assert (chunk.topic, chunk.partition, chunk.next_offset) == (
            batch.topic,
            batch.partition,
            batch.next_offset,
        )
        assert chunk.tables == tables
