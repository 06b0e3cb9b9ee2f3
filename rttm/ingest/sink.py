"""The partitioned PostgreSQL sink: one partition per shard, one connection per partition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from rttm.ingest.chunks import SHARD_KEYS, SHARDS, Chunk
from rttm.ingest.offsets import OffsetCommitter
from rttm.ingest.writer import ShardWriter


class _ShardPartition(StatefulSinkPartition[Chunk, None]):
    def __init__(self, writer: ShardWriter) -> None:
        self._writer = writer

    def write_batch(self, values: list[Chunk]) -> None:
        self._writer.write(values)

    def snapshot(self) -> None:
        # Nothing to resume: write_batch returns only once its rows are committed, so the
        # rows of every closed epoch are durable when Bytewax records the epoch.
        return None

    def close(self) -> None:
        self._writer.close()


class PostgresSink(FixedPartitionedSink[Chunk, None]):
    """Writes ``(shard key, Chunk)`` items, each shard through its own connection.

    Args:
        database_url: libpq URL of the migrated database.
        kafka_config: librdkafka settings for committing consumer-group offsets, or
            ``None`` to not commit them.
    """

    def __init__(self, database_url: str, kafka_config: Mapping[str, Any] | None) -> None:
        self._url = database_url
        self._kafka_config = kafka_config

    def list_parts(self) -> list[str]:
        """One partition per shard."""
        return list(SHARD_KEYS)

    def part_fn(self, item_key: str) -> int:
        """Keys are the shard names themselves: shard-n goes to partition n."""
        return SHARD_KEYS.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ShardPartition:
        """The writer of one shard, with its own connection."""
        committer = (
            OffsetCommitter(self._kafka_config, SHARDS) if self._kafka_config is not None else None
        )
        return _ShardPartition(ShardWriter(self._url, SHARD_KEYS.index(for_part), committer))
