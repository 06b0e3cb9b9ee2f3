"""Least privilege: a role with only `rttm db grant-ingest`'s grants runs the whole ingestion;
one with only `rttm db grant-viewer`'s serves every reader and can write nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from rttm.core.config import KafkaSettings
from rttm.core.db import roles
from rttm.stack.processes import free_port
from rttm.web.app import create_app
from support import workload
from tests.dashboard_data import seed
from tests.ingest_helpers import REPO, counts, create_topics, flow_env, run_flow_process
from tests.servers import rttm_against

pytestmark = pytest.mark.integration
#: The test roles' password (the test PostgreSQL asks for one: scram, as in production).
INGEST_PASSWORD = uuid.uuid4().hex


@pytest.fixture
def ingest_role(postgres_admin_url: str, migrated_db: str) -> Iterator[str]:
    """A new login role with no privileges (dropped after the test)."""
    role = f"rttm_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(INGEST_PASSWORD)
            )
        )
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
        env=flow_env(kafka, migrated_db),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert granted.returncode == 0, granted.stderr
    assert 'GRANT INSERT ON "public"."rttm_trade_events"' in granted.stdout

    create_topics(kafka)
    work = workload.build(20_000, seed=4)  # events of a day with no partition yet
    workload.produce(kafka.brokers, work)
    as_role = psycopg.conninfo.make_conninfo(
        migrated_db, user=ingest_role, password=INGEST_PASSWORD
    )
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
        env=flow_env(kafka, migrated_db),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("rttm: error: cannot grant to role 'no_such_role_x' on ")
    assert 'role "no_such_role_x" does not exist' in result.stderr


@pytest.fixture
def viewer_role(postgres_admin_url: str, migrated_db: str) -> Iterator[tuple[str, str]]:
    """A new login role with no privileges, and its URL to ``migrated_db`` (dropped after)."""
    role, password = f"rttm_viewer_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    yield role, psycopg.conninfo.make_conninfo(migrated_db, user=role, password=password)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_viewer_grants_serve_every_reader_and_allow_no_write(
    migrated_db: str, viewer_role: tuple[str, str]
) -> None:
    role, as_viewer = viewer_role
    seeded = seed(migrated_db)
    granted = rttm_against(migrated_db, "db", "grant-viewer", role)
    assert granted.returncode == 0, granted.stderr
    assert 'GRANT SELECT ON "public"."rttm_metrics"' in granted.stdout
    assert "INSERT" not in granted.stdout

    client = TestClient(create_app(as_viewer))
    trace = client.get(f"/api/trace/{seeded.stuck}")
    assert trace.status_code == 200, trace.text
    entry = trace.json()["events"][-1]
    for path in (
        "/readyz",
        "/api/status",
        "/api/alerts",
        "/metrics",
        f"/api/text/events?key={entry['key']}&time={entry['time']}",
    ):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
    assert client.get("/api/status").json()["stuck"]  # it read the seeded rows
    for args in (("status",), ("alerts",), ("trace", seeded.completed)):
        shown = rttm_against(as_viewer, *args)
        assert shown.returncode == 0, (args, shown.stderr)

    with psycopg.connect(as_viewer, autocommit=True) as conn:
        assert roles.write_access(conn) == []
        for statement in (
            "INSERT INTO rttm_metrics (metric, window_start, labels, window_end, value)"
            " VALUES ('x', now(), '{}', now(), 1)",
            "UPDATE rttm_alerts SET value = 0",
            "DELETE FROM rttm_stuck_trades",
            "TRUNCATE rttm_alert_outbox",
            "INSERT INTO rttm_metrics_totals (metric, labels, value) VALUES ('x', '{}', 1)",
            "SELECT count(*) FROM rttm_ingest_rejects",
            "CREATE TABLE rttm_extra (a int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(migrated_db, autocommit=True) as owner:
        assert roles.write_access(owner) == ["superuser"]
        owner.execute(sql.SQL("GRANT INSERT ON rttm_metrics TO {}").format(sql.Identifier(role)))
    with psycopg.connect(as_viewer, autocommit=True) as conn:
        assert roles.write_access(conn) == ["INSERT on rttm_metrics"]


def test_serve_and_run_refuse_a_role_that_can_write_in_one_line(migrated_db: str) -> None:
    port = str(free_port())
    for args in (("serve", "--port", port), ("run", "--ingest", "0", "--metrics", "0")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTTM_")}
        refused = subprocess.run(
            [sys.executable, "-m", "rttm", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**env, "RTTM_DATABASE_URL": migrated_db, "RTTM_KAFKA_BROKERS": "127.0.0.1:1"},
            timeout=60,
            check=False,
        )
        assert refused.returncode == 1, (args, refused.stderr)
        assert refused.stderr == (
            "rttm: error: the dashboard's database role can write (superuser): give rttm serve"
            " a role made with `rttm db grant-viewer ROLE`, or pass --allow-writer-role\n"
        ), args
