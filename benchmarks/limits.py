"""What this machine allows without RTTM: the broker's raw consume rate, PostgreSQL's COPY rate.

RTTM's figures are read against these: a flow cannot consume faster than librdkafka reads
the topics, nor write faster than PostgreSQL takes the same rows by ``COPY``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from psycopg import sql

from rttm.registry import REJECTS_COLUMNS, REJECTS_TABLE, TOPICS

#: Rows per COPY transaction: RTTM's largest batch (``source.CONSUME_BATCH``).
COPY_BATCH = 5_000
_COLUMNS = {**{spec.table: spec.columns for spec in TOPICS}, REJECTS_TABLE: REJECTS_COLUMNS}


def consume_rate(brokers: str) -> tuple[int, float]:
    """Read every ``rttm.*`` partition to its end with one consumer, doing nothing else.

    Returns:
        (messages read, seconds).
    """
    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": "rttm-bench-raw", "enable.auto.commit": False,
         "enable.partition.eof": True, "fetch.wait.max.ms": 100}
    )  # fmt: skip
    metadata = consumer.list_topics(timeout=10)
    assignment = [
        TopicPartition(spec.name, p, OFFSET_BEGINNING)
        for spec in TOPICS
        for p in metadata.topics[spec.name].partitions
    ]
    started = time.perf_counter()
    consumer.assign(assignment)
    count, ended = 0, 0
    while ended < len(assignment):
        for message in consumer.consume(10_000, 1.0):
            error = message.error()
            if error is None:
                count += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                ended += 1
    seconds = time.perf_counter() - started
    consumer.close()
    return count, seconds


def export_batches(url: str) -> dict[str, list[bytes]]:
    """Every table's rows as text-format COPY data, in batches of ``COPY_BATCH`` rows."""
    out: dict[str, list[bytes]] = {}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table, columns in _COLUMNS.items():
            query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
            )
            lines: list[bytes] = []
            with cur.copy(query) as copy:
                for data in copy:
                    lines.append(bytes(data))
            # Text COPY escapes newlines inside values: one line is one row.
            rows = b"".join(lines).split(b"\n")[:-1]
            out[table] = [
                b"\n".join(rows[n : n + COPY_BATCH]) + b"\n"
                for n in range(0, len(rows), COPY_BATCH)
            ]
    return out


def _copy_all(url: str, work: Iterator[tuple[str, bytes]], lock: threading.Lock) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            table, data = item
            query = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, _COLUMNS[table]))
            )
            with conn.transaction(), cur.copy(query) as copy:
                copy.write(data)


def copy_rate(url: str, batches: dict[str, list[bytes]], connections: int) -> tuple[int, float]:
    """COPY ``batches`` into the (empty, migrated) database at ``url``, a transaction each.

    The data is already formatted, so this is PostgreSQL's own rate for these rows with
    ``connections`` writers in parallel — no Kafka, no decoding, no Python per row.

    Returns:
        (rows written, seconds).
    """
    work = iter([(table, data) for table, items in batches.items() for data in items])
    rows = sum(data.count(b"\n") for items in batches.values() for data in items)
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_copy_all, args=(url, work, lock)) for _ in range(connections)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rows, time.perf_counter() - started
