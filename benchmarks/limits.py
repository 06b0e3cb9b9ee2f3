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

from rttm.core.registry import REJECTS_COLUMNS, REJECTS_TABLE, TOPICS

#: Rows per COPY transaction: RTTM's largest poll (``budget.MAX_POLL``).
COPY_BATCH = 5_000
_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_BINARY_SIGNATURE_LEN = len(_BINARY_SIGNATURE)
_COLUMNS = {**{spec.table: spec.columns for spec in TOPICS}, REJECTS_TABLE: REJECTS_COLUMNS}


def consume_rate(brokers: str) -> tuple[int, float]:
    """Read every ``rttm.*`` partition to its end with one consumer, doing nothing else.

    Returns:
        (messages read, seconds).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "rttm-bench-raw",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )
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


def export_batches(url: str, *, binary: bool) -> dict[str, list[bytes]]:
    """Every table's rows as COPY data (text or binary), in batches of ``COPY_BATCH`` rows."""
    out: dict[str, list[bytes]] = {}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table, columns in _COLUMNS.items():
            query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.Identifier(table),
                sql.SQL("(FORMAT BINARY)" if binary else ""),
            )
            with cur.copy(query) as copy:
                data = b"".join(bytes(block) for block in copy)
            out[table] = _binary_batches(data) if binary else _text_batches(data)
    return out


def _text_batches(data: bytes) -> list[bytes]:
    # Text COPY escapes newlines inside values: one line is one row.
    rows = data.split(b"\n")[:-1]
    return [b"\n".join(rows[n : n + COPY_BATCH]) + b"\n" for n in range(0, len(rows), COPY_BATCH)]


def _binary_batches(data: bytes) -> list[bytes]:
    """Cut a binary COPY stream into complete streams of ``COPY_BATCH`` rows each."""
    header_end = _BINARY_SIGNATURE_LEN + 8 + int.from_bytes(data[15:19], "big", signed=False)
    header, trailer = data[:header_end], b"\xff\xff"
    batches, start, pos, rows = [], header_end, header_end, 0
    while True:
        fields = int.from_bytes(data[pos : pos + 2], "big", signed=True)
        if fields == -1:
            break
        pos += 2
        for _ in range(fields):
            length = int.from_bytes(data[pos : pos + 4], "big", signed=True)
            pos += 4 + max(length, 0)
        rows += 1
        if rows == COPY_BATCH:
            batches.append(header + data[start:pos] + trailer)
            start, rows = pos, 0
    if rows:
        batches.append(header + data[start:pos] + trailer)
    return batches


def _copy_all(url: str, work: Iterator[tuple[str, bytes]], lock: threading.Lock) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            table, data = item
            query = sql.SQL("COPY {} ({}) FROM STDIN {}").format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, _COLUMNS[table])),
                sql.SQL("(FORMAT BINARY)" if data.startswith(_BINARY_SIGNATURE) else ""),
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
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_copy_all, args=(url, work, lock)) for _ in range(connections)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    with psycopg.connect(url) as conn:
        counts = [
            conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            for table in batches
        ]
    return sum(row[0] for row in counts if row), seconds
