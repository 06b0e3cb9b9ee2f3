"""Helpers of the ingestion tests: topics, the flow run here or as a process, its tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from bytewax.testing import run_main
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.db import prepare
from rttm.core.registry import REJECTS_COLUMNS, REJECTS_TABLE, TOPICS, all_tables
from rttm.ingest import settings as ingest_settings
from rttm.ingest.flow import build_flow
from support import workload
from support.truth import expected_keys, expected_rejects, stored_keys, stored_rejects

REPO = Path(__file__).resolve().parents[1]


def create_topics(kafka: KafkaSettings, partitions: int = 2) -> None:
    kafka_topics.create_topics(kafka, partitions=partitions)


def payload(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def flow_env(kafka: KafkaSettings, url: str, **extra: str) -> dict[str, str]:
    """The environment of a bounded ingestion run against the test servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTTM_")}
    return {
        **env,
        "RTTM_KAFKA_BROKERS": kafka.brokers,
        "RTTM_DATABASE_URL": url,
        "RTTM_TAIL": "0",
        **extra,
    }


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
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_failure(env: dict[str, str], expected: str) -> subprocess.CompletedProcess[str]:
    """Run the flow: it must exit 1 within 20 s, its one line ``rttm: error: EXPECTED``."""
    started = time.monotonic()
    result = run_flow_process(env)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"rttm: error: {expected}"]
    assert time.monotonic() - started < 20
    return result


def migrated(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
    return url


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


def assert_complete(url: str, *works: workload.Workload) -> None:
    """Every table holds exactly the keys of ``works``; the rejects are their malformed ones."""
    messages = [message for work in works for message in work.messages]
    assert {table: sorted(keys) for table, keys in stored_keys(url).items()} == {
        table: sorted(keys) for table, keys in expected_keys(messages).items()
    }
    assert stored_rejects(url) == expected_rejects(messages)
