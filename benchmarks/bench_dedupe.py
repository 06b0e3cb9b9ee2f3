"""Dedupe step cost per row (``./dev bench``): 10 % of each chunk's rows are repeats."""

from __future__ import annotations

import random

from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.rows import trade_rows
from rttm.ingest.chunks import Chunk
from rttm.ingest.dedupe import DEFAULT_CAPACITY, ShardDedupe
from rttm.ingest.rows import Row

BATCH = 10_000
REPEATS = BATCH // 10


def test_dedupe_step(benchmark: BenchmarkFixture) -> None:
    benchmark.group = "dedupe (10k rows per round, 10 % repeats)"
    benchmark.extra_info["items"] = BATCH
    distinct = trade_rows(BATCH - REPEATS)
    rng = random.Random(3)
    with_repeats: list[Row] = distinct + rng.sample(distinct, REPEATS)
    table = "rttm_trade_events"

    def setup() -> tuple[tuple[ShardDedupe, Chunk], dict[str, object]]:
        chunk = Chunk("rttm.trade.events", 0, BATCH, {table: list(with_repeats)})
        return (ShardDedupe(DEFAULT_CAPACITY), chunk), {}

    def run(dedupe: ShardDedupe, chunk: Chunk) -> int:
        return len(dedupe.filter(chunk).tables[table])

    kept = benchmark.pedantic(run, setup=setup, rounds=50)
    assert kept == BATCH - REPEATS
