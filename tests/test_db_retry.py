"""The sinks' retry policy against a real PostgreSQL: lost races wait, faults stop at once.

A trigger makes the server itself raise the error under test (serialization failure,
deadlock, missing privilege) while a switch table says so, and counts the attempts with a
sequence, which a rolled-back transaction does not undo.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest

from rttm.core.db.connect import CONNECT_TIMEOUT_S
from rttm.core.db.retry import CONFLICT_RETRIES, Failure, classify
from rttm.core.decode import decode_message
from rttm.core.errors import RttmError
from rttm.ingest.chunks import Chunk
from rttm.ingest.rows import table_row
from rttm.ingest.writer import ShardWriter
from rttm.metrics.merge import MetricsOutput
from rttm.metrics.points import Point
from rttm.metrics.store import MetricsWriter
from rttm.stack.processes import free_port
from tests.samples import SAMPLE_MESSAGES, encode

pytestmark = pytest.mark.integration

TRIGGER = """
CREATE TABLE test_switch (errcode text);
CREATE SEQUENCE test_attempts;
CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE code text;
BEGIN
    PERFORM nextval('test_attempts');
    SELECT errcode INTO code FROM test_switch;
    IF code IS NOT NULL THEN
        RAISE EXCEPTION 'refused by the test' USING ERRCODE = code;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION test_refuse();
"""


def refusing(url: str, table: str, errcode: str | None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TRIGGER.format(table=table).encode())
        conn.execute("INSERT INTO test_switch VALUES (%s)", (errcode,))


def switch(url: str, errcode: str | None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE test_switch SET errcode = %s", (errcode,))


def attempts(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT last_value FROM test_attempts").fetchone()
    return int(row[0]) if row else 0


def dlq_chunk() -> Chunk:
    """One DLQ event as the ingestion's decode step makes it."""
    topic = "rttm.dlq.events"
    table, row = table_row(decode_message(topic, b"k", encode(SAMPLE_MESSAGES[topic]), 0, 0))
    return Chunk(topic, 0, 1, {table: [row]})


def test_errors_are_classified_by_sqlstate(migrated_db: str) -> None:
    with pytest.raises(psycopg.OperationalError) as lost:
        psycopg.connect(f"postgresql://x@127.0.0.1:{free_port()}/x", connect_timeout=2)
    assert classify(lost.value) is Failure.LOST
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for code, failure in (
            ("40001", Failure.CONFLICT),
            ("40P01", Failure.CONFLICT),
            ("42501", Failure.FAULT),
            ("57P01", Failure.LOST),
            ("57P05", Failure.LOST),
        ):
            with pytest.raises(psycopg.Error) as raised:
                conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{code}'; END $$")
            assert raised.value.sqlstate == code
            assert classify(raised.value) is failure, code
        # psycopg's own errors have no SQLSTATE either: a bug to report, not an outage.
        with pytest.raises(psycopg.ProgrammingError) as client_side:
            conn.execute("SELECT %s, %s", (1,))
        assert client_side.value.sqlstate is None
        assert classify(client_side.value) is Failure.FAULT


@pytest.mark.parametrize("errcode", ["serialization_failure", "deadlock_detected"])
def test_a_lost_race_is_retried_with_pauses_until_it_commits(
    migrated_db: str, errcode: str
) -> None:
    refusing(migrated_db, "rttm_dlq_events", errcode)
    writer = ShardWriter(migrated_db, 0, None)
    done = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            writer.write([dlq_chunk()])
        except BaseException as exc:
            failure.append(exc)
        done.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    time.sleep(3.0)
    tried = attempts(migrated_db)
    assert not done.is_set(), failure
    # Three quick retries, then backoff (0.2, 0.4, 0.8, 1.6 s ...): a handful in 3 s, where
    # a loop without pauses makes thousands.
    assert CONFLICT_RETRIES + 1 < tried <= CONFLICT_RETRIES + 6, tried
    switch(migrated_db, None)
    assert done.wait(10), "the batch was not retried after the conflicts stopped"
    writer.close()
    assert failure == []
    with psycopg.connect(migrated_db) as conn:
        row = conn.execute("SELECT count(*) FROM rttm_dlq_events").fetchone()
    assert row == (1,)


def test_a_fault_stops_at_once_naming_the_sqlstate(migrated_db: str) -> None:
    refusing(migrated_db, "rttm_dlq_events", "insufficient_privilege")
    writer = ShardWriter(migrated_db, 0, None)
    started = time.monotonic()
    with pytest.raises(RttmError) as raised:
        writer.write([dlq_chunk()])
    writer.close()
    assert time.monotonic() - started < CONNECT_TIMEOUT_S
    assert attempts(migrated_db) == 1
    assert str(raised.value) == (
        "postgres refused a batch of shard 0 (SQLSTATE 42501 InsufficientPrivilege): "
        "refused by the test"
    )


def test_the_metrics_sink_follows_the_same_policy(migrated_db: str) -> None:
    refusing(migrated_db, "rttm_metrics", "insufficient_privilege")
    writer = MetricsWriter(migrated_db, None)
    now = datetime.now(UTC)
    output = MetricsOutput(points=[Point("tps", (("service", "s"),), now, now, 1.0)])
    with pytest.raises(RttmError) as raised:
        writer.write([output])
    assert "(SQLSTATE 42501 InsufficientPrivilege)" in str(raised.value)
    switch(migrated_db, "serialization_failure")
    before = attempts(migrated_db)
    done = threading.Event()

    def write() -> None:
        writer.write([output])
        done.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    time.sleep(3.0)
    assert not done.is_set()
    tried = attempts(migrated_db) - before
    assert CONFLICT_RETRIES + 1 < tried <= CONFLICT_RETRIES + 6, tried  # pauses, not a loop
    switch(migrated_db, None)
    assert done.wait(10)
    writer.close()
