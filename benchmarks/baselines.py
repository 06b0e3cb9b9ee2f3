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

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    TopicPartition,
)

from rttm.decode import decode_message
from rttm.ingest.chunks import table_row
from rttm.ingest.writer import TABLE_SQL
from rttm.registry import TOPICS

BATCH = 1_000


def _consumer(brokers: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "rttm-baseline",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    metadata = consumer.list_topics(timeout=10)
    assignment = [
        TopicPartition(spec.name, p, OFFSET_BEGINNING)
        for spec in TOPICS
        for p in metadata.topics[spec.name].partitions
    ]
    consumer.assign(assignment)
    return consumer


def _rows(consumer: Consumer, limit: int, partitions: int) -> list[tuple[str, tuple[object, ...]]]:
    """Up to ``limit`` (table, row) pairs, decoded exactly as RTTM decodes them."""
    out: list[tuple[str, tuple[object, ...]]] = []
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
                message.topic() or "", message.key(), message.value(),
                message.partition() or 0, message.offset() or 0,
                None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
            )  # fmt: skip
            out.append(table_row(result))
    return out[:limit]


def run(kind: str, limit: int) -> float:
    """Ingest ``limit`` messages the ``kind`` way; returns messages per second."""
    brokers, url = os.environ["RTTM_KAFKA_BROKERS"], os.environ["RTTM_DATABASE_URL"]
    consumer = _consumer(brokers)
    partitions = len(consumer.assignment())
    started = time.perf_counter()
    done = 0
    with psycopg.connect(url, autocommit=kind == "per-row") as conn:
        while done < limit:
            rows = _rows(consumer, min(BATCH, limit - done), partitions)
            if not rows:
                break
            if kind == "per-row":
                for table, row in rows:
                    conn.execute(TABLE_SQL[table].insert_one, row)
            else:
                with conn.cursor() as cur:
                    by_table: dict[str, list[tuple[object, ...]]] = {}
                    for table, row in rows:
                        by_table.setdefault(table, []).append(row)
                    for table, table_rows in by_table.items():
                        cur.executemany(TABLE_SQL[table].insert_one, table_rows)
                conn.commit()
            done += len(rows)
    elapsed = time.perf_counter() - started
    consumer.close()
    return done / elapsed


if __name__ == "__main__":
    rate = run(sys.argv[1], int(sys.argv[2]))
    print(f"{rate:.1f}")
