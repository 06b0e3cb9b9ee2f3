"""``rttm db migrate``: the six tables exactly, applied once, safe when run concurrently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rttm.core.db.connect import Conn
from rttm.core.db.migrate import MIGRATIONS_TABLE, migrate, migrations
from rttm.core.db.roles import PROGRESS_TABLE, TOPIC_IDS_TABLE
from rttm.core.decode import Accepted, decode_message
from rttm.core.errors import RttmError
from rttm.core.registry import (
    INGESTED_AT_COLUMN,
    REJECTS_COLUMNS,
    REJECTS_TABLE,
    REJECTS_TYPES,
    TOPICS,
    TopicSpec,
    all_tables,
)
from rttm.metrics.store import TABLES as METRICS_TABLES
from tests.samples import SAMPLE_MESSAGES, encode

pytestmark = pytest.mark.integration


def columns(conn: Conn, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
        " ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [name for (name,) in rows]


def test_migrate_creates_the_ingest_and_metrics_tables_with_registry_columns(db: Conn) -> None:
    for spec in TOPICS:
        assert columns(db, spec.table) == [*spec.columns, INGESTED_AT_COLUMN]
    assert columns(db, REJECTS_TABLE) == [*REJECTS_COLUMNS, "rejected_at"]
    tables = {
        name
        for (name,) in db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT LIKE 'rttm_trade_events_%'"
        ).fetchall()
    }
    bookkeeping = {MIGRATIONS_TABLE, PROGRESS_TABLE, TOPIC_IDS_TABLE}
    assert tables == {*all_tables(), *bookkeeping, *METRICS_TABLES}


PG_TYPE_NAMES = {
    "text": "text",
    "int4": "integer",
    "int8": "bigint",
    "bytea": "bytea",
    "timestamptz": "timestamp with time zone",
}


def test_column_types_match_the_contract_types_binary_copy_sends(db: Conn) -> None:
    for table, names, types in [
        *((spec.table, spec.columns, spec.column_types) for spec in TOPICS),
        (REJECTS_TABLE, REJECTS_COLUMNS, REJECTS_TYPES),
    ]:
        rows = db.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (table,),
        ).fetchall()
        actual: dict[str, str] = dict(rows)
        assert {n: actual[n] for n in names} == {
            n: PG_TYPE_NAMES[t] for n, t in zip(names, types, strict=True)
        }, table


def test_second_migrate_is_a_noop(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        before = conn.execute("SELECT version, applied_at FROM rttm_schema_migrations").fetchall()
        assert migrate(conn) == []
        after = conn.execute("SELECT version, applied_at FROM rttm_schema_migrations").fetchall()
    assert before == after
    assert [v for v, _ in after] == [m.version for m in migrations()]


def test_concurrent_migrate_processes_apply_each_migration_once(fresh_db: str) -> None:
    env = {**os.environ, "RTTM_DATABASE_URL": fresh_db}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "rttm", "db", "migrate"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=60)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert sum("applied 0001_ingest_tables.sql" in out for out in outputs) == 1
    assert sum("is up to date" in out for out in outputs) == 2
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute("SELECT version FROM rttm_schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in rows] == [m.version for m in migrations()]


def test_edited_migration_is_refused(migrated_db: str, tmp_path: Path) -> None:
    for migration in migrations():
        (tmp_path / migration.path.name).write_bytes(migration.sql)
    first = migrations()[0].path.name
    (tmp_path / first).write_bytes(migrations()[0].sql + b"\n-- edited\n")
    with (
        psycopg.connect(migrated_db, autocommit=True) as conn,
        pytest.raises(RttmError, match=f"migration {first} was changed after it was applied"),
    ):
        migrate(conn, tmp_path)


def test_failing_migration_is_rolled_back_and_named(fresh_db: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE t_good (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE t_bad (x int); SELECT nonsense;")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        with pytest.raises(RttmError, match=r"migration 0002_bad\.sql failed"):
            migrate(conn, tmp_path)
        assert conn.execute("SELECT to_regclass('t_good') IS NOT NULL").fetchone() == (True,)
        assert conn.execute("SELECT to_regclass('t_bad')").fetchone() == (None,)
        versions = conn.execute("SELECT version FROM rttm_schema_migrations").fetchall()
    assert versions == [(1,)]


@pytest.mark.parametrize("spec", TOPICS, ids=lambda s: s.name)
def test_dedupe_key_is_unique_and_conflicts_are_ignored(db: Conn, spec: TopicSpec) -> None:
    row = sample_row(spec)
    columns_ = ", ".join(spec.columns)
    placeholders = ", ".join(["%s"] * len(spec.columns))
    insert = f"INSERT INTO {spec.table} ({columns_}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"
    for _ in range(2):
        db.execute(insert.encode(), row)
    count = db.execute(f"SELECT count(*) FROM {spec.table}".encode()).fetchone()
    assert count == (1,)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert.replace(" ON CONFLICT DO NOTHING", "").encode(), row)


def test_rejects_keep_raw_bytes(db: Conn) -> None:
    raw = b"\x00\xff{not json"
    db.execute(
        "INSERT INTO rttm_ingest_rejects (topic, kafka_partition, kafka_offset, dedupe_key,"
        " raw_key, raw_value, reason) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        ("rttm.trade.events", 1, 2, "k:x/1/2/3", None, raw, "malformed JSON"),
    )
    row = db.execute("SELECT raw_key, raw_value, rejected_at IS NOT NULL FROM rttm_ingest_rejects")
    assert row.fetchone() == (None, raw, True)


def test_operator_queries_use_indexes(db: Conn) -> None:
    db.execute("SET enable_seqscan = off")
    plans = {
        "trade trace": "SELECT * FROM rttm_trade_events WHERE trade_id = 'T1' ORDER BY event_time",
        "latest lag": "SELECT * FROM rttm_queue_metrics WHERE service_name = 's'"
        " AND topic_name = 't' AND queue_partition = 0 ORDER BY snapshot_time DESC LIMIT 1",
        "dlq by time": "SELECT * FROM rttm_dlq_events WHERE event_time > now() - interval '1 h'",
        "errors by time": "SELECT * FROM rttm_error_events"
        " WHERE event_time > now() - interval '1 h'",
    }
    for name, query in plans.items():
        plan = "\n".join(r[0] for r in db.execute(f"EXPLAIN {query}".encode()).fetchall())
        assert "Index" in plan, f"{name}: {plan}"


def sample_row(spec: TopicSpec) -> tuple[Any, ...]:
    result = decode_message(spec.name, None, encode(SAMPLE_MESSAGES[spec.name]), 1, 7, 1000)
    assert isinstance(result, Accepted)
    payload = tuple(getattr(result.event, f) for f in spec.payload_fields)
    return (*payload, result.dedupe_key, result.partition, result.offset)
