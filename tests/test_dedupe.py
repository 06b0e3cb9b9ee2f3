"""The bounded dedupe step: pure logic, through Bytewax's testing source and sink."""

from __future__ import annotations

import copy
import io
import pickle

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from rttm.core.stream.shards import shard_of
from rttm.core.stream.stats import SourceCounters
from rttm.ingest import settings as ingest_settings
from rttm.ingest import stats
from rttm.ingest.chunks import Chunk
from rttm.ingest.dedupe import DEFAULT_CAPACITY, DedupeMemory, ShardDedupe, dedupe_step
from rttm.ingest.progress import ProgressLine, describe
from rttm.ingest.rows import LAYOUTS, Row
from rttm.ingest.stats import Counters

TABLE = "rttm_dlq_events"


def chunk(*keys: str, table: str = TABLE) -> Chunk:
    width = LAYOUTS[table].dedupe + 3
    rows: list[tuple[object, ...]] = [
        tuple(key if i == LAYOUTS[table].dedupe else None for i in range(width)) for key in keys
    ]
    return Chunk("rttm.dlq.events", 0, 0, {table: rows})


def keys_of(c: Chunk, table: str = TABLE) -> list[str]:
    return [str(row[LAYOUTS[table].dedupe]) for row in c.tables[table]]


def first_time(memory: DedupeMemory, key: str) -> bool:
    return bool(memory.keep_new([(key,)], 0))


def test_memory_is_bounded_and_forgets_the_oldest_keys() -> None:
    memory = DedupeMemory(capacity=10)
    assert all(first_time(memory, f"k{n}") for n in range(25))
    assert len(memory) <= 10
    assert not first_time(memory, "k24")  # recent: remembered
    assert first_time(memory, "k0")  # old: forgotten, so let through (the database decides)


def test_generations_turn_over_when_full_so_the_oldest_keys_are_forgotten() -> None:
    memory = DedupeMemory(capacity=10)  # two generations of 5
    batches: list[list[Row]] = [[(f"b{b}k{n}",) for n in range(5)] for b in range(3)]
    for batch in batches:
        assert memory.keep_new(batch, 0) == batch
        assert len(memory) <= 10
    assert memory.keep_new([batches[2][0]], 0) == []  # the previous generation: seen
    assert memory.keep_new([batches[0][0]], 0) == [batches[0][0]]  # two turnovers ago


def test_remembering_turns_a_generation_over_exactly_when_it_is_full() -> None:
    memory = DedupeMemory(capacity=6)  # two generations of 3
    memory.remember([("a",), ("b",)], 0)
    assert (memory.current, memory.previous) == ({"a", "b"}, set())
    memory.remember([("c",)], 0)
    assert (memory.current, memory.previous) == (set(), {"a", "b", "c"})


def test_a_memory_of_capacity_one_remembers_the_last_batch_only() -> None:
    memory = DedupeMemory(capacity=1)
    for key in ("a", "b", "c"):
        assert first_time(memory, key)
    assert not first_time(memory, "c")
    assert not first_time(memory, "c")  # a batch of nothing new forgets nothing
    assert first_time(memory, "a")


def test_a_batch_keeps_first_occurrences_and_overshoots_by_at_most_one_batch() -> None:
    memory = DedupeMemory(capacity=10)
    rows: list[tuple[object, ...]] = [(f"k{n % 8}", n) for n in range(16)]
    kept = memory.keep_new(rows, 0)
    assert kept == rows[:8]
    assert memory.keep_new([("k7", 99), ("new", 100)], 0) == [("new", 100)]
    assert len(memory) <= 10 + 8


def test_deepcopy_is_independent_and_keeps_the_window() -> None:
    memory = DedupeMemory(capacity=100)
    first_time(memory, "a")
    clone = copy.deepcopy(memory)
    first_time(memory, "b")
    assert not first_time(clone, "a")
    assert first_time(clone, "b")


def test_tables_share_the_shards_memory_budget() -> None:
    state = ShardDedupe(capacity=10)
    state.filter(chunk(*(f"e:{n}" for n in range(20))))
    state.filter(chunk(*(f"e:{n}" for n in range(20)), table="rttm_parsed_logs"))
    assert len(state.memory) <= 10 + 20


def test_a_snapshot_with_other_table_tags_resumes_with_an_empty_memory() -> None:
    state = ShardDedupe(capacity=10)
    state.filter(chunk("e:1"))
    state.tags = {**state.tags, TABLE: "9|"}  # as if the registry had been reordered
    resumed = pickle.loads(pickle.dumps(state))  # noqa: S301 - our own object
    assert len(resumed.memory) == 0
    assert resumed.memory.generation_size == 5  # the same capacity, emptied
    assert keys_of(resumed.filter(chunk("e:1"))) == ["e:1"]
    same = pickle.loads(pickle.dumps(ShardDedupe(capacity=10)))  # noqa: S301
    assert same.tags is not None
    assert same.memory.generation_size == 5


def test_each_dropped_duplicate_is_counted_once_and_a_replay_drops_none() -> None:
    state, before = ShardDedupe(capacity=100), stats.COUNTERS.duplicates
    first = Chunk("rttm.dlq.events", 0, 10, chunk("e:1", "e:2", "e:1").tables, first_offset=7)
    assert keys_of(state.filter(first)) == ["e:1", "e:2"]
    assert stats.COUNTERS.duplicates - before == 1
    later = Chunk("rttm.dlq.events", 0, 12, chunk("e:2", "e:3").tables, first_offset=10)
    assert keys_of(state.filter(later)) == ["e:3"]
    assert stats.COUNTERS.duplicates - before == 2
    # From below what was read (the database was behind a snapshot): all rows go on.
    replay = Chunk("rttm.dlq.events", 0, 12, chunk("e:1", "e:2", "e:3").tables, first_offset=7)
    assert keys_of(state.filter(replay)) == ["e:1", "e:2", "e:3"]
    assert stats.COUNTERS.duplicates - before == 2
    other = Chunk("rttm.dlq.events", 1, 3, chunk("e:1").tables)  # another partition: new
    assert keys_of(state.filter(other)) == []
    assert stats.COUNTERS.duplicates - before == 3


def test_a_replayed_chunk_is_remembered_so_later_repeats_are_dropped() -> None:
    def dlq(first: int, end: int, *keys: str) -> Chunk:
        return Chunk("rttm.dlq.events", 0, end, chunk(*keys).tables, first_offset=first)

    state = ShardDedupe(capacity=6)  # generations of 3
    state.filter(dlq(10, 40, "e:0"))
    assert keys_of(state.filter(dlq(11, 14, "e:1", "e:2", "e:3"))) == ["e:1", "e:2", "e:3"]
    assert keys_of(state.filter(dlq(40, 43, "e:1", "e:2", "e:4"))) == ["e:4"]  # remembered
    # Remembering fills generations like keeping does: two replays later, e:1 is forgotten.
    state.filter(dlq(14, 17, "e:5", "e:6", "e:7"))
    state.filter(dlq(17, 20, "e:8", "e:9", "e:10"))
    assert keys_of(state.filter(dlq(43, 44, "e:1"))) == ["e:1"]
    assert len(state.memory) <= 6 + 3


def test_same_key_in_two_tables_is_two_rows() -> None:
    state = ShardDedupe(capacity=100)
    first = state.filter(chunk("e:1", "e:1", "e:2"))
    other = state.filter(chunk("e:1", table="rttm_parsed_logs"))
    assert keys_of(first) == ["e:1", "e:2"]
    assert keys_of(other, "rttm_parsed_logs") == ["e:1"]


@pytest.mark.parametrize("capacity", [4, 1_000])
def test_dedupe_step_in_a_flow_drops_repeats_within_the_window(capacity: int) -> None:
    inputs = [
        ("shard-0", chunk("e:1", "e:2")),
        ("shard-1", chunk("e:1")),
        ("shard-0", chunk("e:2", "e:3")),
        ("shard-0", chunk("e:1")),
    ]
    out: list[tuple[str, Chunk]] = []
    flow = Dataflow("dedupe_test")
    stream = op.input("in", flow, TestingSource(inputs, batch_size=10))
    op.output("out", op.stateful_map("dedupe", stream, dedupe_step(capacity)), TestingSink(out))
    run_main(flow)  # type: ignore[no-untyped-call]
    per_shard: dict[str, list[list[str]]] = {}
    for key, c in out:  # order holds per key (shard), not across keys
        per_shard.setdefault(key, []).append(keys_of(c))
    assert per_shard == {"shard-0": [["e:1", "e:2"], ["e:3"], []], "shard-1": [["e:1"]]}


def test_shard_of_is_stable_and_spread() -> None:
    for count in (1, 2, 5):
        assert {shard_of(f"T{n}", count) for n in range(1_000)} == set(range(count))
    assert shard_of("T123", 2) == shard_of("T123", 2) == 1  # crc32: the same in every process


def test_progress_line_reports_counters() -> None:
    counters = Counters(rows=9, rejects=1, duplicates=2)
    source = SourceCounters(read=10, lag={("t", 0): 5, ("t", 1): 7})
    assert describe(counters, source, 1234.4) == (
        "ingest: 1,234 rows/s | read 10 | rows 9 | rejects 1 | duplicates dropped 2"
        " | remaining lag 12"
    )
    stream = io.StringIO()
    summary = ProgressLine(stream, counters, source).start().stop()
    assert summary.startswith("ingest: ")
    assert "rows/s on average over" in summary


def test_the_default_capacity_is_the_documented_200_000_keys_per_shard() -> None:
    assert DEFAULT_CAPACITY == 200_000  # README, Configuration: RTTM_DEDUPE_CAPACITY
    assert ingest_settings.IngestSettings.__dataclass_fields__["dedupe_capacity"].default == (
        200_000
    )
    assert DedupeMemory().generation_size == 100_000
