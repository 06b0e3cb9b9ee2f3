"""Hand-written consumers RTTM is compared with, in the same run and the same schema.

Both decode with the same contracts and write idempotently (``ON CONFLICT DO NOTHING``);
they differ from RTTM only in how they move rows: one INSERT per message with autocommit,
or ``executemany`` of 1,000 messages per transaction. Run as
``python -m benchmarks.baselines per-row|batched N`` with ``RTTM_*`` set; prints rows/s.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    TopicPartition,
)

from rttm.core.decode import decode_message
from rttm.core.registry import TOPICS
from rttm.ingest.rows import Row, table_row
from rttm.ingest.writer import TABLE_SQL

BATCH = 1_000


def _consumer(brokers: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "rttm-baseline",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(timeout=10)
    assignment = [
        TopicPartition(spec.name, p, OFFSET_BEGINNING)
        for spec in TOPICS
        for p in metadata.topics[spec.name].partitions
    ]
    consumer.assign(assignment)
    return consumer


def _rows(consumer: Consumer, limit: int, partitions: int) -> list[tuple[str, Row]]:
    """Up to ``limit`` (table, row) pairs, decoded exactly as RTTM decodes them."""
    out: list[tuple[str, Row]] = []
    eof = 0
    while len(out) < limit and eof < partitions:
        messages = consumer.consume(BATCH, 1.0)
        if not messages:
            break
        for message in messages:
            error = message.error()
            if error is not None:
                eof += error.code() == KafkaError._PARTITION_EOF
                continue
            kind, stamp = message.timestamp()
            result = decode_message(
                message.topic() or "",
                message.key(),
                message.value(),
                message.partition() or 0,
                message.offset() or 0,
                None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
            )
            out.append(table_row(result))
    return out[:limit]


def insert_per_row(conn: psycopg.Connection[Any], rows: Sequence[tuple[str, Row]]) -> None:
    """One ``INSERT`` statement per row (``conn`` in autocommit: a transaction each)."""
    for table, row in rows:
        conn.execute(TABLE_SQL[table].insert_one, row)


def insert_batched(conn: psycopg.Connection[Any], rows: Sequence[tuple[str, Row]]) -> None:
    """``executemany`` per table (psycopg pipelines it), one transaction for all rows."""
    by_table: dict[str, list[Row]] = {}
    for table, row in rows:
        by_table.setdefault(table, []).append(row)
    with conn.transaction(), conn.cursor() as cur:
        for table, table_rows in by_table.items():
            cur.executemany(TABLE_SQL[table].insert_one, table_rows)


def run(kind: str, limit: int) -> float:
    """Ingest ``limit`` messages the ``kind`` way; returns messages per second."""
    brokers, url = os.environ["RTTM_KAFKA_BROKERS"], os.environ["RTTM_DATABASE_URL"]
    consumer = _consumer(brokers)
    partitions = len(consumer.assignment())
    started = time.perf_counter()
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while done < limit:
            rows = _rows(consumer, min(BATCH, limit - done), partitions)
            if not rows:
                break
            (insert_per_row if kind == "per-row" else insert_batched)(conn, rows)
            done += len(rows)
    elapsed = time.perf_counter() - started
    consumer.close()
    return done / elapsed


if __name__ == "__main__":
    rate = run(sys.argv[1], int(sys.argv[2]))
    print(f"{rate:.1f}")
