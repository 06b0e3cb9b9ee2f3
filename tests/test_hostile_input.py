"""Hostile input through the real decode path and the real sink into PostgreSQL.

Thousands of generated batches — random and mutated bytes, SQL-injection strings, NUL bytes
and escapes, lone surrogates, huge strings, deeply nested JSON, numbers beyond int64,
timestamps that overflow UTC, null and empty keys and values, arbitrary headers — go through
``split_batch``, the dedupe step and ``ShardWriter`` into a migrated database. Nothing may
raise or stall, and each message's fate is checked on its own against the reference decoder
(``decode_message``): a refused one is a reject holding its raw key, raw value and reason; a
valid one is a row equal, column by column, to the event it carries (so injection strings
are stored as data), or, when an earlier message had its key, a duplicate of that row.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka import Message as KafkaMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from rttm.core.db import prepare
from rttm.core.decode import Rejected, decode_message
from rttm.core.registry import REJECTS_TABLE, TOPICS
from rttm.core.stream.source import RawBatch
from rttm.ingest.chunks import DEFAULT_SHARDS, split_batch
from rttm.ingest.dedupe import ShardDedupe
from rttm.ingest.rows import LAYOUTS, table_row
from rttm.ingest.writer import ShardWriter
from tests.ingest_helpers import row_columns
from tests.samples import SAMPLE_MESSAGES, encode

pytestmark = pytest.mark.integration

HOSTILE_TEXT = [
    "'; DROP TABLE rttm_trade_events; --",
    "x'); DELETE FROM rttm_ingest_rejects; --",
    "$$; COPY rttm_trade_events TO PROGRAM 'id'; $$",
    "\\.\n\\N\t\\x00",  # COPY text-format markers
    "\x00",
    "a\x00b",
    "\u2028\u2029\ufeff",
    "é" * 70_000,  # a long non-ASCII text, stored whole
    "T" * 257,  # beyond an id's 256
]
HOSTILE_NUMBERS = [-1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, 1.5, "7", True]
HOSTILE_TIMES = [
    "0001-01-01T00:00:00+01:00",  # overflows in UTC
    "9999-12-31T23:59:59-01:00",
    "2026-02-30T00:00:00Z",
    "2026-01-05T09:00:00",  # naive
    "1970-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "",
]
RAW_HOSTILE = [
    b"[" * 5_000 + b"]" * 5_000,  # deeply nested, refused at its first byte (not an object)
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,  # 5,000 objects deep: msgspec's depth limit
    b'{"event_id": "deep", "x":' + b"[" * 5_000 + b"]" * 5_000 + b"}",  # deep unknown field
    b'{"trade_id": "T\\ud800"}',  # lone surrogate escape
    b'{"trade_id": "\xff\xfe"}',  # invalid UTF-8
    b"\x00" * 16,
    b"null",
    b"{}",
    b"",
]


@st.composite
def values(draw: st.DrawFn, topic: str, offset: int) -> bytes | None:
    kind = draw(st.sampled_from(["field", "raw", "bytes", "flip", "none"]))
    if kind == "none":
        return None
    if kind == "raw":
        return draw(st.sampled_from(RAW_HOSTILE))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    payload: dict[str, Any] = dict(SAMPLE_MESSAGES[topic])
    # Unique per message (its offset is), so a dropped message cannot pass on an earlier
    # message's row; a hostile value drawn for event_id below may still repeat on purpose.
    # Fixed width: the offsets come from a counter outside Hypothesis, and a payload whose
    # length changed with them would change what "flip" may draw when a case is replayed.
    payload["event_id"] = f"{offset:012d}:{draw(st.text(max_size=12))}"
    if kind == "flip":
        raw = bytearray(encode(payload))
        for _ in range(draw(st.integers(1, 4))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw)
    field = draw(st.sampled_from(sorted(payload)))
    payload[field] = draw(
        st.sampled_from(HOSTILE_TEXT)
        | st.sampled_from(HOSTILE_NUMBERS)
        | st.sampled_from(HOSTILE_TIMES)
        | st.text(max_size=30)
        | st.none()
    )
    return json.dumps(payload).encode()


_OFFSETS = itertools.count(step=1_000)
HEADERS: st.SearchStrategy[list[tuple[str, str | bytes | None]] | None] = st.none() | st.lists(
    st.tuples(st.text(max_size=5), st.binary(max_size=5) | st.none()), max_size=2
)


@st.composite
def batches(draw: st.DrawFn) -> RawBatch:
    topic = draw(st.sampled_from([spec.name for spec in TOPICS]))
    partition = draw(st.integers(0, 5))
    first = next(_OFFSETS)  # new Kafka coordinates per batch, as a live stream has
    messages = [
        KafkaMessage(
            topic=topic,
            partition=partition,
            offset=offset,
            key=draw(st.none() | st.sampled_from([b"", b"\x00", b"'; --"]) | st.binary(max_size=8)),
            value=draw(values(topic, offset)),
            headers=draw(HEADERS),
            timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_000 + offset),
        )
        for offset in range(first, first + draw(st.integers(1, 6)))
    ]
    return RawBatch(topic, partition, messages, first + len(messages))


def _stored(conn: psycopg.Connection[Any], table: str, key: object) -> list[tuple[Any, ...]]:
    """The rows of ``table`` with ``key``, in the column order of the writer's row tuples."""
    columns = row_columns(table)
    query = sql.SQL("SELECT {} FROM {} WHERE dedupe_key = %s").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
    )
    return conn.execute(query, (key,)).fetchall()


def _tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str | None]]:
    """Every table (schema, name, parent): the sink adds day partitions, and only those."""
    return conn.execute(
        "SELECT n.nspname, c.relname, CASE WHEN c.relispartition THEN"
        " (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid) END"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " ORDER BY 1, 2"
    ).fetchall()


def test_hostile_batches_through_the_sink_are_each_a_row_or_a_reject(
    new_database: Callable[[], str],
) -> None:
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
        tables_before = _tables(conn)
    writers = [ShardWriter(url, shard, None) for shard in range(DEFAULT_SHARDS)]
    dedupes = [ShardDedupe(1_000) for _ in range(DEFAULT_SHARDS)]
    fates: Counter[str] = Counter()
    first_row: dict[tuple[str, object], tuple[Any, ...]] = {}

    @settings(max_examples=1_500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(batches())
    def check(batch: RawBatch) -> None:
        for shard, (_, chunk) in enumerate(split_batch(batch)):
            writers[shard].write([dedupes[shard].filter(chunk)])
        with psycopg.connect(url, autocommit=True) as conn:
            for message in batch.messages:
                result = decode_message(
                    batch.topic,
                    message.key(),
                    message.value(),
                    batch.partition,
                    message.offset() or 0,
                    message.timestamp()[1],
                )
                table, row = table_row(result)
                key = row[LAYOUTS[table].dedupe]
                where = f"{batch.topic}@{message.offset()} ({table}, {key!r:.60})"
                if isinstance(result, Rejected):
                    fate = "reject"
                    assert _stored(conn, REJECTS_TABLE, key) == [row], where
                else:
                    fate = "duplicate" if (table, key) in first_row else "row"
                    expected = first_row.setdefault((table, key), row)
                    assert _stored(conn, table, key) == [expected], where
                    assert _stored(conn, REJECTS_TABLE, key) == [], where
                fates[fate] += 1

    try:
        check()
    finally:
        for writer in writers:
            writer.close()
    # Each fate was met often (about 600 rows, 300 duplicates, 4,900 rejects in a run).
    assert fates["row"] >= 300, fates
    assert fates["duplicate"] >= 50, fates
    assert fates["reject"] >= 2_000, fates
    with psycopg.connect(url) as conn:  # the injection strings created or dropped nothing
        tables_after = _tables(conn)
    assert set(tables_before) <= set(tables_after)
    added = {(schema, parent) for schema, _, parent in set(tables_after) - set(tables_before)}
    assert added <= {("public", "rttm_trade_events")}, added
