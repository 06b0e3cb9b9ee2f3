"""Decode a raw Kafka batch into per-shard chunks of table rows (the batched hot path).

A shard is ``crc32(registry key) % shards``: every event with the same registry key (a
trade, a service, a business-queue partition) goes to the same shard, hence through the same
dedupe state and the same database connection, in Kafka order. Each raw batch yields one
chunk per shard — empty ones too — so that every shard reports how far it has written each
Kafka partition; the consumer-group offset is the minimum over shards (see ``progress``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from rttm.core.decode import Refusal, dedupe_key, empty_value, rejected, validated
from rttm.core.registry import BY_NAME, REJECTS_TABLE
from rttm.core.stream.shards import shard_keys, shard_of
from rttm.core.stream.source import RawBatch
from rttm.ingest.rows import Row, event_row, reject_row

#: Default number of shards = sink partitions = database connections of one flow
#: (``RTTM_SHARDS``); 2 measured best on 2 cores (1 to 4 tried: each extra connection
#: competes for the same cores). A cluster wants about one per process, so that every
#: process writes. Under a recovery directory it may grow but not shrink: Bytewax keeps
#: the sink's state per shard and cannot resume without one it had (``rttm ingest`` checks).
#: Growing is safe: resume offsets are per Kafka partition, writes are idempotent, the
#: offset commit only counts current shards (``offsets``), and the tables catch what the
#: dedupe memories of re-hashed keys, empty at first, would have dropped.
DEFAULT_SHARDS = 2


@dataclass(slots=True)
class Chunk:
    """Rows for one shard from one raw batch, and the Kafka position they reach.

    Attributes:
        tables: rows per table, in Kafka order.
        topic: the Kafka topic the batch came from.
        partition: its Kafka partition.
        next_offset: the offset after the batch's last message.
        first_offset: the offset of the batch's first message.
    """

    topic: str
    partition: int
    next_offset: int
    tables: dict[str, list[Row]] = field(default_factory=dict)
    first_offset: int = field(default=0, kw_only=True)


def _timestamp_ms(message: Message) -> int | None:
    """The message's Kafka timestamp in ms, or None when the broker gave none."""
    kind, stamp = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE else stamp


def split_batch(batch: RawBatch, shards: int = DEFAULT_SHARDS) -> list[tuple[str, Chunk]]:
    """Decode every message of ``batch`` and route its row to its shard's chunk.

    The hot path of the ingestion: a valid message goes straight from ``validated`` to its
    row tuple, without the per-message objects of :func:`~rttm.core.decode.decode_message`; a
    refused one keeps the reason ``validated`` gave.
    """
    topic, partition = batch.topic, batch.partition
    spec = BY_NAME[topic]
    key_of, table = spec.key_of, spec.table
    first = (batch.messages[0].offset() or 0) if batch.messages else batch.next_offset
    chunks = [Chunk(topic, partition, batch.next_offset, first_offset=first) for _ in range(shards)]
    rows: list[list[Row]] = [chunk.tables.setdefault(table, []) for chunk in chunks]
    for message in batch.messages:
        value, offset = message.value(), message.offset() or 0
        try:
            event = validated(spec, value) if value else None
        except Refusal as refusal:
            event, detail = None, str(refusal)
        if event is None:
            detail = detail if value else empty_value(value)  # why, on the refused path only
            reject = rejected(
                topic, message.key(), value, partition, offset, _timestamp_ms(message), detail
            )
            chunks[partition % shards].tables.setdefault(REJECTS_TABLE, []).append(
                reject_row(reject)
            )
            continue
        stamp = None if event.event_id is not None else _timestamp_ms(message)
        key = dedupe_key(event.event_id, topic, partition, offset, stamp)
        rows[shard_of(key_of(event), shards)].append(event_row(event, key, partition, offset))
    for chunk in chunks:  # no empty table lists: the writer skips them, the dedupe too
        if not chunk.tables[table]:
            del chunk.tables[table]
    return list(zip(shard_keys(shards), chunks, strict=True))
