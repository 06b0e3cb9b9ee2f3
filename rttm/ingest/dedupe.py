"""Bounded, recoverable dedupe of rows by their dedupe key, one memory per shard.

Two generations of sets: a key is "seen" if either holds it; when the current generation
fills up it becomes the previous one and the oldest generation is forgotten. One memory
serves all tables of a shard (each key tagged with its table, since keys are unique per
table, not across), so memory stays under ``capacity`` keys per shard plus two batches
(~21 MB per 200,000 keys) however many tables there are, lookups are O(1), and the state is
a plain object that Bytewax snapshots with the rest of the flow. It is an optimisation that
keeps duplicates off the wire: the tables' unique keys remain the guarantee.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rttm.ingest import stats
from rttm.ingest.chunks import Chunk
from rttm.ingest.rows import LAYOUTS, Row

#: Keys remembered per shard, all tables together (two generations of half this size).
DEFAULT_CAPACITY = 200_000


class DedupeMemory:
    """Recently seen dedupe keys: ``capacity`` of them plus at most a batch per generation."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.generation_size = max(capacity // 2, 1)
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def remember(self, rows: list[Row], index: int, tag: str = "") -> None:
        """Note the keys of ``rows`` as seen, dropping none (a replay is written whole)."""
        current = self.current
        for row in rows:
            current.add(tag + row[index])  # type: ignore[operator]
        if len(current) >= self.generation_size:
            self.previous, self.current = current, set()

    def keep_new(self, rows: list[Row], index: int, tag: str = "") -> list[Row]:
        """The rows whose key (``tag + row[index]``) was not seen recently; remembers them.

        One loop per batch, no call per row (the hot path). The generation turns over
        after the batch, so a generation may exceed its size by one batch.
        """
        current, previous = self.current, self.previous
        kept = []
        for row in rows:
            key = tag + row[index]  # type: ignore[operator]
            if key not in current and key not in previous:
                current.add(key)
                kept.append(row)
        if len(current) >= self.generation_size:
            self.previous, self.current = current, set()
        return kept

    def __deepcopy__(self, memo: dict[int, object]) -> DedupeMemory:
        # Bytewax deep-copies state at every snapshot; the keys are immutable strings, so
        # copying the sets (in C) is a full copy, far cheaper than copy.deepcopy's walk.
        clone = DedupeMemory.__new__(DedupeMemory)
        clone.generation_size = self.generation_size
        clone.current, clone.previous = self.current.copy(), self.previous.copy()
        return clone

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


#: Tag of each table's keys in a shard's memory: keys are unique per table, not across.
#: Short, so kept in the snapshot with the keys: a resumed memory whose tags differ (the
#: registry changed) would read one table's keys as another's, and is dropped.
_TAGS = {table: f"{n}|" for n, table in enumerate(LAYOUTS)}


class ShardDedupe:
    """The dedupe memory of one shard, shared by its tables.

    It also remembers how far it has read each Kafka partition. A chunk from below that is
    a replay (the database was behind a recovery snapshot, so the flow re-reads what the
    memory saw but the database lacks): its rows all go to the database, whose unique keys
    decide, instead of being dropped as seen.
    """

    def __init__(self, capacity: int) -> None:
        self.memory = DedupeMemory(capacity)
        self.tags = _TAGS
        self.read_to: dict[tuple[str, int], int] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A snapshot with other tags (the registry changed since) starts afresh: dedupe is
        # an optimisation, the tables' unique keys catch the rest.
        if state["tags"] != _TAGS:
            capacity = state["memory"].generation_size * 2
            state = {"memory": DedupeMemory(capacity), "tags": _TAGS, "read_to": {}}
        self.__dict__.update(state)

    def filter(self, chunk: Chunk) -> Chunk:
        """``chunk`` without the rows whose dedupe key its table saw before (in place)."""
        dropped = 0
        memory, tags = self.memory, self.tags
        where = (chunk.topic, chunk.partition)
        read_to = self.read_to.get(where, 0)
        replay = chunk.first_offset < read_to
        if chunk.next_offset > read_to:
            self.read_to[where] = chunk.next_offset
        for table, rows in chunk.tables.items():
            if replay:
                memory.remember(rows, LAYOUTS[table].dedupe, tags[table])
                continue
            kept = memory.keep_new(rows, LAYOUTS[table].dedupe, tags[table])
            dropped += len(rows) - len(kept)
            chunk.tables[table] = kept
        if dropped:
            stats.record_dropped_duplicates(dropped)
        return chunk


def dedupe_step(
    capacity: int,
) -> Callable[[ShardDedupe | None, Chunk], tuple[ShardDedupe, Chunk]]:
    """A ``stateful_map`` mapper that filters chunks through the shard's memories."""

    def mapper(state: ShardDedupe | None, chunk: Chunk) -> tuple[ShardDedupe, Chunk]:
        state = state if state is not None else ShardDedupe(capacity)
        return state, state.filter(chunk)

    return mapper
