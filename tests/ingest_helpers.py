"""Helpers of the ingestion tests: produce to the real broker, run the flow, read tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from bytewax.testing import run_main
from confluent_kafka import Consumer, Producer, TopicPartition
from psycopg import sql

from rttm import kafka_topics
from rttm.config import KafkaSettings
from rttm.ingest import settings as ingest_settings
from rttm.ingest.flow import build_flow
from rttm.registry import REJECTS_COLUMNS, REJECTS_TABLE, TOPICS, all_tables

Message = tuple[str, bytes | None, bytes | None]
REPO = Path(__file__).resolve().parents[1]


def create_topics(kafka: KafkaSettings, partitions: int = 2) -> None:
    kafka_topics.create_topics(kafka, partitions=partitions)


def produce(brokers: str, messages: Iterable[Message], **config: Any) -> int:
    """Send ``(topic, key, value)`` messages in order; returns how many."""
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, **config})
    count = 0
    for topic, key, value in messages:
        producer.produce(topic, value, key)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return count


def payload(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def flow_env(kafka: KafkaSettings, url: str, **extra: str) -> dict[str, str]:
    """The environment of a bounded ingestion run against the test servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTTM_")}
    return {**env, "RTTM_KAFKA_BROKERS": kafka.brokers, "RTTM_DATABASE_URL": url,
            "RTTM_TAIL": "0", **extra}  # fmt: skip


def ingest(kafka: KafkaSettings, url: str, **extra: str) -> None:
    """Run the ingestion flow in this process until every partition is read."""
    flow = build_flow(ingest_settings.from_env(flow_env(kafka, url, **extra)))
    run_main(flow)  # type: ignore[no-untyped-call]


def run_flow_process(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m bytewax.run dataflows.rttm ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.rttm", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def rows(url: str, table: str, columns: Sequence[str] | None = None) -> list[tuple[Any, ...]]:
    """Every row of ``table`` without its write timestamp, sorted: comparable across runs."""
    with psycopg.connect(url) as conn:
        if columns is None:
            found = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                " AND column_name NOT IN ('ingested_at', 'rejected_at') ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            columns = [name for (name,) in found]
        query = sql.SQL("SELECT {} FROM {} ORDER BY dedupe_key").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
        )
        return conn.execute(query).fetchall()


def row_columns(table: str) -> tuple[str, ...]:
    """The columns of ``table`` in the order of the writer's row tuples (``table_row``)."""
    if table == REJECTS_TABLE:
        return REJECTS_COLUMNS
    return next(spec.columns for spec in TOPICS if spec.table == table)


def committed_offsets(
    kafka: KafkaSettings, topic: str, group: str, partitions: int = 2
) -> list[int]:
    """The group's committed offset of each partition of ``topic`` (-1001: none)."""
    consumer = Consumer(kafka.client_config(**{"group.id": group}))
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return [tp.offset for tp in found]


def counts(url: str) -> dict[str, int]:
    """Rows per ingestion table."""
    with psycopg.connect(url) as conn:
        result = {}
        for table in all_tables():
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            result[table] = int(row[0]) if row else 0
    return result


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """All ingested tables' contents, for equality across runs."""
    return {table: rows(url, table) for table in all_tables()}
