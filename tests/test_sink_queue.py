"""The sink's writer thread: batches queued behind a slow write go in one transaction."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import cast

from rttm.ingest.chunks import Chunk
from rttm.ingest.sink import _ShardPartition
from rttm.ingest.writer import ShardWriter


class _GatedWriter:
    """Records each write; the first one waits until the test opens the gate."""

    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.gate = threading.Event()
        self.writing = threading.Event()
        self.closed = False

    def write(self, chunks: Sequence[Chunk]) -> None:
        self.writing.set()
        self.gate.wait(10)
        self.writes.append([chunk.next_offset for chunk in chunks])

    def close(self) -> None:
        self.closed = True


def _batch(*offsets: int) -> list[Chunk]:
    return [Chunk("rttm.trade.events", 0, offset) for offset in offsets]


def test_batches_queued_behind_a_write_are_written_together_in_order() -> None:
    writer = _GatedWriter()
    part = _ShardPartition(cast("ShardWriter", writer), "shard-0")
    part.write_batch(_batch(1))
    assert writer.writing.wait(10)  # the writer holds the first batch
    part.write_batch(_batch(2, 3))
    part.write_batch(_batch(4))  # two batches wait behind the write
    writer.gate.set()
    part.snapshot()  # returns only once every queued batch is written
    assert writer.writes == [[1], [2, 3, 4]]
    part.write_batch(_batch(5))
    part.close()
    assert writer.writes == [[1], [2, 3, 4], [5]]
    assert writer.closed
