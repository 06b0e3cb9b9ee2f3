"""Sink write cost per batch size (``./dev bench``): rows/s into a durable PostgreSQL.

The contenders write the same new trade-event rows into the same migrated schema:
RTTM's writer on its fast path (binary ``COPY``) and on its merge path (``COPY`` into
staging, ``INSERT … ON CONFLICT DO NOTHING``), both with the progress row in the same
transaction; and the two baselines of ``benchmarks.baselines`` (``executemany`` in one
transaction; one autocommitted ``INSERT`` per row). Each run ends by counting the rows.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.baselines import insert_batched, insert_per_row
from benchmarks.rows import TRADES, trade_rows
from rttm.ingest.chunks import Chunk
from rttm.ingest.rows import Row
from rttm.ingest.writer import ShardWriter

TABLE = "rttm_trade_events"
Write = Callable[[list[Row]], None]


def _rttm_writer(url: str, *, merge: bool) -> tuple[Write, Callable[[], None]]:
    writer = ShardWriter(url, 0, None)
    offset = 0

    def write(rows: list[Row]) -> None:
        nonlocal offset
        offset += len(rows)
        if merge:  # stay on the merge path, as after a replay's first conflict
            writer._merge_left = 1_000_000
        writer.write([Chunk(TRADES, 0, offset, {TABLE: rows})])

    return write, writer.close


def _baseline(url: str, insert: Callable[..., None]) -> tuple[Write, Callable[[], None]]:
    conn = psycopg.connect(url, autocommit=True)
    return (lambda rows: insert(conn, [(TABLE, row) for row in rows])), conn.close


CONTENDERS = {
    "copy": lambda url: _rttm_writer(url, merge=False),
    "merge": lambda url: _rttm_writer(url, merge=True),
    "executemany": lambda url: _baseline(url, insert_batched),
    "per-row": lambda url: _baseline(url, insert_per_row),
}


@pytest.mark.parametrize(
    ("how", "batch"),
    [
        (how, batch)
        for how in CONTENDERS
        for batch in (100, 1_000, 5_000)
        if not (how == "per-row" and batch > 1_000)
    ],
)
def test_sink_write(benchmark: BenchmarkFixture, migrated_db: str, how: str, batch: int) -> None:
    benchmark.group = f"sink write, {batch:,} trade rows per batch"
    benchmark.extra_info["items"] = batch
    rounds = 5 if how == "per-row" else max(5, min(40, 50_000 // batch))
    write, close = CONTENDERS[how](migrated_db)
    try:
        benchmark.pedantic(write, setup=lambda: ((trade_rows(batch),), {}), rounds=rounds)
    finally:
        close()
    with psycopg.connect(migrated_db) as conn:
        row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()  # noqa: S608 - constant
    assert row is not None
    assert row[0] == rounds * batch
