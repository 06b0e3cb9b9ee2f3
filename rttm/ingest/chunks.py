"""Decode a raw Kafka batch into per-shard chunks of table rows (the batched hot path).

A shard is ``crc32(registry key) % shards``: every event with the same registry key (a
trade, a service, a business-queue partition) goes to the same shard, hence through the same
dedupe state and the same database connection, in Kafka order. Each raw batch yields one
chunk per shard — empty ones too — so that every shard reports how far it has written each
Kafka partition; the consumer-group offset is the minimum over shards (see ``progress``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE
from msgspec.structs import astuple

from rttm.decode import Accepted, Decoded, Refusal, decode_message, fallback_key, validated
from rttm.ingest.source import RawBatch
from rttm.registry import BY_NAME, REJECTS_COLUMNS, REJECTS_TABLE, TOPICS

#: Default number of shards = sink partitions = database connections of one flow
#: (``RTTM_SHARDS``); 2 measured best on 2 cores (1 to 4 tried: each extra connection
#: competes for the same cores). A cluster wants about one per process, so that every
#: process writes. Under a recovery directory it may grow but not shrink: Bytewax keeps
#: the sink's state per shard and cannot resume without one it had (``rttm ingest`` checks).
#: Growing is safe: resume offsets are per Kafka partition, writes are idempotent, the
#: offset commit only counts current shards (``offsets``), and the tables catch what the
#: dedupe memories of re-hashed keys, empty at first, would have dropped.
DEFAULT_SHARDS = 2


def shard_keys(shards: int) -> tuple[str, ...]:
    """The item keys (and sink partition names) of ``shards`` shards."""
    return tuple(f"shard-{n}" for n in range(shards))


Row = tuple[object, ...]
#: Position of the dedupe key in each table's row tuples.
DEDUPE_INDEX: dict[str, int] = {
    **{spec.table: len(spec.payload_fields) for spec in TOPICS},
    REJECTS_TABLE: REJECTS_COLUMNS.index("dedupe_key"),
}


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


def shard_of(key: str, shards: int) -> int:
    """The shard of a registry key (stable across processes, unlike ``hash``)."""
    return zlib.crc32(key.encode()) % shards


def table_row(result: Decoded) -> tuple[str, Row]:
    """The table and row tuple (columns in registry order) a decoded message becomes."""
    if isinstance(result, Accepted):
        return result.spec.table, (
            *astuple(result.event), result.dedupe_key, result.partition, result.offset,
        )  # fmt: skip
    return REJECTS_TABLE, (
        result.topic, result.partition, result.offset, result.dedupe_key, result.key,
        result.value, result.reason,
    )  # fmt: skip


def split_batch(batch: RawBatch, shards: int = DEFAULT_SHARDS) -> list[tuple[str, Chunk]]:
    """Decode every message of ``batch`` and route its row to its shard's chunk.

    The hot path of the ingestion: a valid message goes straight from ``validated`` to its
    row tuple, without the per-message objects of :func:`decode_message`, which handles the
    rest (and gives a refused message its reason).
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
        except Refusal:
            event = None
        if event is None:
            kind, stamp = message.timestamp()
            reject = decode_message(topic, message.key(), value, partition, offset,
                                    None if kind == TIMESTAMP_NOT_AVAILABLE else stamp)  # fmt: skip
            reject_table, row = table_row(reject)
            chunks[partition % shards].tables.setdefault(reject_table, []).append(row)
            continue
        if event.event_id is not None:
            key = "e:" + event.event_id
        else:
            kind, stamp = message.timestamp()
            key = fallback_key(topic, partition, offset,
                               None if kind == TIMESTAMP_NOT_AVAILABLE else stamp)  # fmt: skip
        rows[shard_of(key_of(event), shards)].append((*astuple(event), key, partition, offset))
    for chunk in chunks:  # no empty table lists: the writer skips them, the dedupe too
        if not chunk.tables[table]:
            del chunk.tables[table]
    return list(zip(shard_keys(shards), chunks, strict=True))
