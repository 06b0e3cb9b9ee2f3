"""The ingestion's writer against a real PostgreSQL, without Kafka: rows, COPY and merge paths.

``ShardWriter`` is what makes a chunk durable. These tests hand it rows built by the real
decoder and read the tables back column by column: the COPY fast path, the merge path a
stored row sends it to, the row-by-row salvage of a row PostgreSQL refuses, the progress
row written in the same transaction, the day partitions and the counters operators read.
They are the fast tests ``./dev mutate rttm/ingest/writer.py`` runs.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.db import partitions
from rttm.core.decode import decode_message
from rttm.core.registry import BY_NAME, REJECTS_TABLE, TOPICS
from rttm.ingest import stats
from rttm.ingest.chunks import Chunk
from rttm.ingest.offsets import OffsetCommitter
from rttm.ingest.rows import Row, table_row
from rttm.ingest.writer import MERGE_RUN, ShardWriter
from rttm.stack.processes import free_port
from tests import ingest_helpers
from tests.ingest_helpers import committed_offsets, row_columns
from tests.samples import SAMPLE_MESSAGES, encode

pytestmark = pytest.mark.integration

TRADES = "rttm.trade.events"
TRADE_TABLE = BY_NAME[TRADES].table
_offsets = iter(range(10**9))


def event_row(topic: str, **changes: Any) -> tuple[str, Row]:
    """(table, row) of a valid message of ``topic``, at a new offset of partition 0."""
    payload = {**SAMPLE_MESSAGES[topic], "event_id": f"ev-{next(_offsets)}", **changes}
    offset = next(_offsets)
    return table_row(decode_message(topic, b"k", encode(payload), 0, offset, 1_700_000_000_000))


def reject_row(topic: str) -> tuple[str, Row]:
    return table_row(decode_message(topic, b"k", b"{not json", 0, next(_offsets), 1))


def chunk(topic: str, rows: Sequence[tuple[str, Row]], partition: int = 0) -> Chunk:
    tables: dict[str, list[Row]] = {}
    for table, row in rows:
        tables.setdefault(table, []).append(row)
    return Chunk(topic, partition, next(_offsets), tables)


def stored(url: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` in the writer's column order, by dedupe key."""
    return ingest_helpers.rows(url, table, row_columns(table))


def progress(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT topic, kafka_partition, shard, next_offset FROM rttm_ingest_progress"
            " ORDER BY 1, 2, 3"
        ).fetchall()


def by_key(rows: Sequence[tuple[str, Row]], table: str) -> list[Row]:
    """The rows of ``table`` among ``rows``, ordered as :func:`stored` reads them back."""
    index = row_columns(table).index("dedupe_key")
    return sorted((row for t, row in rows if t == table), key=lambda row: str(row[index]))


@pytest.fixture
def writer(migrated_db: str) -> Iterator[ShardWriter]:
    shard = ShardWriter(migrated_db, 1, None)
    yield shard
    shard.close()


def counters() -> tuple[int, int]:
    return stats.COUNTERS.rows, stats.COUNTERS.rejects


def test_every_topics_rows_and_rejects_are_copied_column_for_column_with_the_progress(
    writer: ShardWriter, migrated_db: str
) -> None:
    before = counters()
    written: list[tuple[str, Row]] = []
    chunks = []
    for spec in TOPICS:
        rows = [event_row(spec.name), event_row(spec.name), reject_row(spec.name)]
        written += rows
        chunks.append(chunk(spec.name, rows, partition=3))
    writer.write(chunks)
    for table in {table for table, _ in written}:
        assert stored(migrated_db, table) == by_key(written, table), table
    assert progress(migrated_db) == sorted(
        (c.topic, 3, 1, c.next_offset) for c in chunks
    )  # one row per partition written, for this shard, at the chunk's end
    after = counters()
    assert (after[0] - before[0], after[1] - before[1]) == (2 * len(TOPICS), len(TOPICS))


def test_a_batch_meeting_stored_rows_stores_only_the_new_ones_batch_after_batch(
    writer: ShardWriter, migrated_db: str
) -> None:
    first = [event_row(TRADES) for _ in range(3)]
    writer.write([chunk(TRADES, first)])
    before = counters()
    again = [*first[1:], event_row(TRADES)]  # a replay overlapping what is stored
    writer.write([chunk(TRADES, again)])
    assert stored(migrated_db, TRADE_TABLE) == by_key([*first, again[-1]], TRADE_TABLE)
    assert counters()[0] - before[0] == 1  # the replayed rows are not counted again
    assert counters()[1] == before[1]  # nor as rejects
    # The merge path stays on for a run of batches, each stores its new rows and only them.
    later = [[event_row(TRADES), event_row(TRADES)] for _ in range(MERGE_RUN + 2)]
    for n, rows in enumerate(later):
        writer.write([chunk(TRADES, [*rows, first[0]] if n % 2 else rows)])
    every = [*first, again[-1], *(row for rows in later for row in rows)]
    assert stored(migrated_db, TRADE_TABLE) == by_key(every, TRADE_TABLE)
    assert counters()[0] - before[0] == 1 + 2 * len(later)


def test_a_row_postgres_refuses_becomes_a_reject_with_its_values_and_the_rest_is_stored(
    writer: ShardWriter, migrated_db: str
) -> None:
    good = [event_row(TRADES), event_row(TRADES)]
    # The decoder refuses NUL in text; a row with one stands for any row PostgreSQL refuses.
    table, row = event_row(TRADES)
    at = row_columns(TRADE_TABLE).index("message")
    refused = (*row[:at], "text with a NUL \x00 inside", *row[at + 1 :])
    batch = chunk(TRADES, [good[0], (table, refused), good[1]], partition=2)
    before = counters()
    writer.write([batch])
    assert stored(migrated_db, TRADE_TABLE) == by_key(good, TRADE_TABLE)
    ((topic, partition, offset, key, raw_key, raw_value, reason),) = stored(
        migrated_db, REJECTS_TABLE
    )
    dedupe_at = row_columns(TRADE_TABLE).index("dedupe_key")
    assert (topic, partition, offset, key, raw_key) == (
        TRADES,
        refused[-2],
        refused[-1],
        refused[dedupe_at],
        None,
    )
    assert b'"message": "text with a NUL \\u0000 inside"' in raw_value
    assert reason.startswith(f"{TRADES}[{refused[-2]}]@{refused[-1]}: postgres refused the row: ")
    assert "0x00" in reason
    assert progress(migrated_db) == [(TRADES, 2, 1, batch.next_offset)]
    after = counters()
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)


def test_day_partitions_are_made_for_the_days_written_within_the_horizon(
    writer: ShardWriter, migrated_db: str
) -> None:
    today = partitions.today()
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)

    def at(days: int, hours: int = 0) -> tuple[str, Row]:
        moment = midnight + timedelta(days=days, hours=hours)
        return event_row(TRADES, event_time=moment.isoformat().replace("+00:00", "Z"))

    # A narrow spread makes every day between (20 and 21 are not written), a wide one
    # (beyond 31 days) only the days present; beyond the horizon the default keeps it.
    writer.write([chunk(TRADES, [at(19, 23), at(22)])])
    writer.write([chunk(TRADES, [at(100), at(160)])])
    writer.write([chunk(TRADES, [at(200), at(231)])])  # 31 days apart: still narrow
    writer.write([chunk(TRADES, [at(300), at(332)])])  # 32: wide
    writer.write([chunk(TRADES, [at(400), at(-400)])])  # the horizon: 400 days, both ways
    writer.write([chunk(TRADES, [at(401), at(-401)])])
    with psycopg.connect(migrated_db) as conn:
        made = {
            name
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'rttm_trade_events'::regclass"
            ).fetchall()
        }
        where = [
            w
            for (w,) in conn.execute(
                "SELECT tableoid::regclass::text FROM rttm_trade_events ORDER BY event_time"
            ).fetchall()
        ]

    def name(days: int) -> str:
        return f"rttm_trade_events_p{today + timedelta(days=days):%Y%m%d}"

    horizon = 400  # as the README says
    assert {name(d) for d in (19, 20, 21, 22, 100, 160, 300, 332, horizon, -horizon)} <= made
    assert {name(d) for d in range(200, 232)} <= made
    assert not {name(d) for d in (23, 99, 101, 159, 161, 301, 331)} & made
    assert not {name(d) for d in (horizon + 1, -horizon - 1)} & made
    assert where == [
        "rttm_trade_events_default",
        name(-horizon),
        name(19),
        name(22),
        name(100),
        name(160),
        name(200),
        name(231),
        name(300),
        name(332),
        name(horizon),
        "rttm_trade_events_default",
    ]


def test_nothing_to_write_needs_no_connection_and_closing_an_unused_writer_is_quiet() -> None:
    nowhere = f"postgresql://rttm@127.0.0.1:{free_port()}/rttm"  # nothing listens there
    idle = ShardWriter(nowhere, 0, None)
    idle.write([])
    idle.close()


def test_batches_without_trade_events_and_with_a_table_first_met_on_the_merge_path(
    writer: ShardWriter, migrated_db: str
) -> None:
    dlq = [event_row("rttm.dlq.events"), event_row("rttm.dlq.events")]
    writer.write([chunk("rttm.dlq.events", dlq)])
    logs = [event_row("rttm.log.events")]
    # A replayed DLQ row sends the batch to the merge path, where the log table is new.
    writer.write([chunk("rttm.dlq.events", dlq[:1]), chunk("rttm.log.events", logs)])
    assert stored(migrated_db, "rttm_dlq_events") == by_key(dlq, "rttm_dlq_events")
    assert stored(migrated_db, "rttm_parsed_logs") == by_key(logs, "rttm_parsed_logs")


def test_the_merge_path_lasts_a_run_of_conflicting_batches_and_ends_at_the_first_clean_one(
    writer: ShardWriter, migrated_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = event_row(TRADES)
    writer.write([chunk(TRADES, [seen])])
    assert staging_tables(migrated_db) == []  # a clean batch: COPY, no staging table

    def batches(replayed: bool, count: int) -> int:
        """Write ``count`` batches (each with a stored row if ``replayed``); COPYs refused."""
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="rttm.ingest.writer"):
            for _ in range(count):
                writer.write([chunk(TRADES, [event_row(TRADES), *([seen] if replayed else [])])])
        return caplog.text.count("COPY refused")

    assert batches(replayed=True, count=3) == 1  # COPY refused once, then merged
    assert staging_tables(migrated_db) == ["rttm_stage_rttm_trade_events"]
    # A clean batch on the merge path ends the run: the next replay tries COPY again.
    assert batches(replayed=False, count=1) == 0
    assert batches(replayed=True, count=1) == 1
    # Replays in a row: COPY is tried again after MERGE_RUN batches.
    assert batches(replayed=True, count=MERGE_RUN - 1) == 0
    assert batches(replayed=True, count=1) == 1


def staging_tables(url: str) -> list[str]:
    """The merge path's temporary staging tables, which any session can see in the catalogue."""
    with psycopg.connect(url) as conn:
        return [
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relpersistence = 't'"
                " AND relname LIKE 'rttm\\_stage\\_%' ORDER BY 1"
            ).fetchall()
        ]


def test_a_connection_the_server_ends_mid_run_is_replaced_and_the_batch_written(
    writer: ShardWriter, migrated_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = event_row(TRADES)
    writer.write([chunk(TRADES, [seen])])
    writer.write([chunk(TRADES, [seen, event_row(TRADES)])])  # on the merge path now
    before = stats.COUNTERS.retries
    with psycopg.connect(migrated_db, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"  # waits for it
            " WHERE application_name = 'rttm-ingest-shard-1' AND datname = current_database()"
        ).fetchall()
    assert ended == [(True,)]
    last = [seen, event_row(TRADES)]  # the new connection has no staging table yet
    with caplog.at_level(logging.WARNING, logger="rttm.ingest.writer"):
        writer.write([chunk(TRADES, last)])
    assert stats.COUNTERS.retries == before + 1
    assert caplog.text.count("database unavailable") == caplog.text.count("database back") == 1
    assert last[1][1] in stored(migrated_db, TRADE_TABLE)


def test_offsets_of_the_written_batches_are_committed_to_the_consumer_groups(
    kafka: KafkaSettings, migrated_db: str
) -> None:
    kafka_topics.create_topics(kafka, partitions=2)
    shard = ShardWriter(migrated_db, 0, OffsetCommitter(kafka.client_config(), shards=1))
    trades = chunk(TRADES, [event_row(TRADES)], partition=1)
    dlq = chunk("rttm.dlq.events", [event_row("rttm.dlq.events")], partition=0)
    shard.write([trades])
    shard.write([dlq])  # within the commit interval: committed by close() at the latest
    shard.close()
    for written in (trades, dlq):
        group = BY_NAME[written.topic].consumer_group
        committed = committed_offsets(kafka, written.topic, group)[written.partition]
        assert committed == written.next_offset, written.topic


class Relay:
    """A local port that refuses connections until :meth:`open`, then forwards to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.port, self._target = free_port(), target
        self._server: socket.socket | None = None

    @property
    def opened(self) -> bool:
        return self._server is not None

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, args=(self._server,), daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _serve(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65_536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


def test_a_database_down_at_the_first_batch_is_waited_for_then_written(migrated_db: str) -> None:
    server = psycopg.conninfo.conninfo_to_dict(migrated_db)
    relay = Relay((str(server["host"]), int(str(server["port"]))))
    shard = ShardWriter(psycopg.conninfo.make_conninfo(migrated_db, port=str(relay.port)), 2, None)
    rows = [event_row(TRADES)]
    failed: list[BaseException] = []

    def write() -> None:
        try:
            shard.write([chunk(TRADES, rows)])
        except BaseException as exc:
            failed.append(exc)

    writer_thread = threading.Thread(target=write)
    writer_thread.start()
    try:
        time.sleep(1.0)  # refused, then retried after 0.2 s and 0.4 s: still waiting
        assert writer_thread.is_alive(), failed
        relay.open()
        writer_thread.join(30)
        assert not writer_thread.is_alive()
        assert failed == []
        assert stored(migrated_db, TRADE_TABLE) == by_key(rows, TRADE_TABLE)
    finally:
        if not relay.opened:  # let a writer still waiting finish
            relay.open()
        writer_thread.join(30)
        shard.close()
        relay.close()
