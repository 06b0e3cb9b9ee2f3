"""Least privilege: a role with only `rttm db grant-ingest`'s grants runs the whole ingestion."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from benchmarks import workload
from rttm.config import KafkaSettings
from tests.ingest_helpers import REPO, counts, create_topics, flow_env, run_flow_process

pytestmark = pytest.mark.integration


@pytest.fixture
def ingest_role(postgres_admin_url: str, migrated_db: str) -> Iterator[str]:
    """A new login role with no privileges (dropped after the test)."""
    role = f"rttm_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_ingest_grants_are_enough_and_nothing_more(
    kafka: KafkaSettings, migrated_db: str, ingest_role: str
) -> None:
    granted = subprocess.run(
        [sys.executable, "-m", "rttm", "db", "grant-ingest", ingest_role],
        env=flow_env(kafka, migrated_db), cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert 'GRANT INSERT ON "public"."rttm_trade_events"' in granted.stdout

    create_topics(kafka)
    work = workload.build(20_000, seed=4)  # events of a day with no partition yet
    workload.produce(kafka.brokers, work)
    as_role = psycopg.conninfo.make_conninfo(migrated_db, user=ingest_role)
    want = {**work.distinct, "rttm_ingest_rejects": work.malformed}
    # The first run has three shards; the second folds the third's positions into the two
    # it has; before the third, the positions are lost, so it replays everything through
    # the merge path (staging tables).
    for run, shards in (("first", "3"), ("fewer shards", "2"), ("replay", "2")):
        if run == "replay":
            with psycopg.connect(migrated_db, autocommit=True) as admin:
                admin.execute("DELETE FROM rttm_ingest_progress")
        result = run_flow_process(flow_env(kafka, as_role, RTTM_SHARDS=shards))
        assert result.returncode == 0, result.stderr[:3000]
        assert counts(migrated_db) == {table: want[table] for table in counts(migrated_db)}
    with psycopg.connect(migrated_db) as admin:
        kept = admin.execute("SELECT DISTINCT shard FROM rttm_ingest_progress").fetchall()
    assert sorted(kept) == [(0,), (1,)]

    with psycopg.connect(as_role, autocommit=True) as conn:
        for statement in (
            "SELECT count(*) FROM rttm_trade_events",
            "DELETE FROM rttm_ingest_rejects",
            "UPDATE rttm_dlq_events SET reason = 'x'",
            "TRUNCATE rttm_parsed_logs",
            "DROP TABLE rttm_error_events",
            "CREATE TABLE rttm_extra (a int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_granting_to_a_missing_role_is_one_clear_line(
    kafka: KafkaSettings, migrated_db: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rttm", "db", "grant-ingest", "no_such_role_x"],
        env=flow_env(kafka, migrated_db), cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("rttm: error: cannot grant to role 'no_such_role_x' on ")
    assert 'role "no_such_role_x" does not exist' in result.stderr
