"""The partitioned PostgreSQL sink: one partition per shard, one connection per partition.

Each partition hands its batches to a writer thread, so PostgreSQL inserts one batch while
the worker decodes the next (psycopg releases the GIL while it waits on the server). The
queue is short: when the database is slow or down, the worker blocks and Kafka buffers.
When the writer finds more than one batch queued, it writes them in one transaction: the
source reads a bounded round at a time (``rttm.core.stream.budget``), and a commit per round
would make PostgreSQL, the bottleneck while catching up, pay the cost of a transaction
(COPY per table, progress rows, WAL flush) several times as often.
A snapshot waits until every queued batch is committed, so an epoch is recorded as done
only once its rows are durable — the recovery contract of a synchronous sink.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from rttm.core.stream.shards import shard_keys
from rttm.ingest.chunks import Chunk
from rttm.ingest.offsets import OffsetCommitter
from rttm.ingest.writer import ShardWriter

_LOG = logging.getLogger(__name__)
#: Batches a partition may have queued for its writer thread before the worker waits.
QUEUED_BATCHES = 2


class _ShardPartition(StatefulSinkPartition[Chunk, None]):
    def __init__(self, writer: ShardWriter, name: str) -> None:
        self._writer = writer
        self._queue: queue.Queue[list[Chunk] | None] = queue.Queue(maxsize=QUEUED_BATCHES)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"rttm-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = False
        while not last:
            chunks, taken, last = self._take()
            try:
                if chunks and self._failure is None:
                    self._writer.write(chunks)
            except BaseException as exc:
                _LOG.exception("writing a batch failed; stopping the flow")
                self._failure = exc
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    def _take(self) -> tuple[list[Chunk], int, bool]:
        """The next batch joined with every batch queued behind it, in order.

        Returns (chunks, batches taken, whether the closing marker was among them).
        """
        batch = self._queue.get()
        chunks, taken = list(batch or ()), 1
        while batch is not None:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                break
            taken += 1
            chunks.extend(batch or ())
        return chunks, taken, batch is None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def write_batch(self, values: list[Chunk]) -> None:
        """Queue ``values`` for the writer thread (waits while the queue is full)."""
        self._raise_failure()
        self._queue.put(values)

    def snapshot(self) -> None:
        """Wait until every queued batch is committed; nothing to resume from."""
        self._queue.join()
        self._raise_failure()

    def close(self) -> None:
        """Drain the queue, stop the thread, flush the offset commit, disconnect."""
        self._queue.join()
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        self._raise_failure()


class PostgresSink(FixedPartitionedSink[Chunk, None]):
    """Writes ``(shard key, Chunk)`` items, each shard through its own connection.

    Args:
        database_url: libpq URL of the migrated database.
        kafka_config: librdkafka settings for committing consumer-group offsets, or
            ``None`` to not commit them.
        shards: number of shards (sink partitions, connections).
    """

    def __init__(
        self, database_url: str, kafka_config: Mapping[str, Any] | None, shards: int
    ) -> None:
        self._url = database_url
        self._kafka_config = kafka_config
        self._keys = shard_keys(shards)

    def list_parts(self) -> list[str]:
        """One partition per shard."""
        return list(self._keys)

    def part_fn(self, item_key: str) -> int:
        """Keys are the shard names themselves: shard-n goes to partition n."""
        return self._keys.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ShardPartition:
        """The writer of one shard, with its own connection and thread."""
        committer = (
            OffsetCommitter(self._kafka_config, len(self._keys))
            if self._kafka_config is not None
            else None
        )
        writer = ShardWriter(self._url, self._keys.index(for_part), committer)
        return _ShardPartition(writer, for_part)
