"""The ingestion as an operator runs it: start-up checks, scale-out, kill -9, database outage.

Each test runs ``python -m bytewax.run dataflows.rttm`` in real processes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from bytewax.recovery import init_db_dir

from rttm.core.config import KafkaSettings
from rttm.core.db.connect import describe
from rttm.core.db.migrate import migrations
from rttm.core.registry import TOPICS
from rttm.stack.pgdata import purge_under
from rttm.stack.postgres import PostgresProcess, start_postgres
from rttm.stack.processes import free_port
from support import workload
from tests.conftest import TEST_POSTGRES_SETTINGS
from tests.ingest_helpers import (
    REPO,
    assert_complete,
    counts,
    create_topics,
    flow_env,
    migrated,
    one_line_failure,
    run_flow_process,
    snapshot,
)
from tests.processes import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def loaded(kafka: KafkaSettings) -> tuple[KafkaSettings, workload.Workload]:
    """Topics holding a seeded mixed workload (duplicates and malformed included)."""
    create_topics(kafka)
    work = workload.build(30_000, seed=5)
    workload.produce(kafka.brokers, work)
    return kafka, work


# -- start-up checks -------------------------------------------------------------------


@pytest.mark.parametrize("shards", ["0", "x", "65"])
def test_bad_shard_count_fails_fast(kafka: KafkaSettings, migrated_db: str, shards: str) -> None:
    reason = (
        "at most 64 (a connection each), got 65"
        if shards == "65"
        else (f"a positive integer, got {shards!r}")
    )
    one_line_failure(
        flow_env(kafka, migrated_db, RTTM_SHARDS=shards), f"RTTM_SHARDS must be {reason}"
    )


def test_kafka_credentials_never_reach_the_output(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    create_topics(kafka)
    config = tmp_path / "kafka.properties"  # SASL against a broker that does not speak it
    config.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
        "sasl.username=rttm\nsasl.password=S3cr3t-kafka\n"
    )
    result = one_line_failure(
        flow_env(kafka, migrated_db, RTTM_KAFKA_CONFIG=str(config)),
        f"cannot reach kafka at {kafka.brokers} within 5 s: SASL PLAIN mechanism handshake "
        "failed: Broker: Unsupported SASL mechanism: broker's supported mechanisms: PLAIN",
    )
    assert "S3cr3t" not in result.stderr + result.stdout


def test_unknown_topic_in_subset_fails_fast(kafka: KafkaSettings, migrated_db: str) -> None:
    env = flow_env(kafka, migrated_db, RTTM_TOPICS="rttm.trade.events,rttm.nope")
    one_line_failure(
        env,
        "RTTM_TOPICS: unknown topic 'rttm.nope'; known topics: rttm.trade.events, "
        "rttm.queue.metrics, rttm.dlq.events, rttm.error.events, rttm.log.events",
    )


def test_unreachable_broker_fails_fast(migrated_db: str) -> None:
    dead = KafkaSettings(brokers=f"127.0.0.1:{free_port()}", extra={})
    one_line_failure(
        flow_env(dead, migrated_db),
        f"cannot reach kafka at {dead.brokers} within 5 s: "
        f"Connect to ipv4#{dead.brokers} failed: Connection refused",
    )


def test_unreachable_database_fails_fast(kafka: KafkaSettings) -> None:
    port = free_port()
    url = f"postgresql://rttm:secret@127.0.0.1:{port}/rttm"
    result = one_line_failure(
        flow_env(kafka, url),
        f"cannot connect to postgres at 127.0.0.1:{port}/rttm: Connection refused",
    )
    assert "secret" not in result.stderr


def test_wrong_database_password_fails_fast_without_showing_it(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    state = tmp_path / "pg"  # the local server wants a password of every role (scram-sha-256)
    server = start_postgres(state, free_port(), TEST_POSTGRES_SETTINGS)
    try:
        with psycopg.connect(server.url("rttm"), autocommit=True) as conn:
            conn.execute("CREATE ROLE rttm_ingest LOGIN PASSWORD 'the-right-one'")
        wrong = f"postgresql://rttm_ingest:Wr0ng-S3cr3t@127.0.0.1:{server.port}/rttm"
        result = one_line_failure(
            flow_env(kafka, wrong),
            f"cannot connect to postgres at 127.0.0.1:{server.port}/rttm: "
            'password authentication failed for user "rttm_ingest"',
        )
        assert "Wr0ng" not in result.stderr + result.stdout
    finally:
        server.stop()
        purge_under(tmp_path)  # as root, the data lives under /var/lib/rttm-postgres


def test_unmigrated_database_and_missing_topics_fail_fast(
    kafka: KafkaSettings, new_database: Callable[[], str], migrated_db: str
) -> None:
    empty = new_database()
    pending = ", ".join(migration.path.name for migration in migrations())
    assert pending.startswith("0001_ingest_tables.sql, 0002_trade_event_partitions.sql, ")
    one_line_failure(
        flow_env(kafka, empty),
        f"database {describe(empty)} is not migrated (pending: {pending}): run `rttm db migrate`",
    )
    one_line_failure(
        flow_env(kafka, migrated_db, RTTM_TOPICS="rttm.dlq.events"),
        f"topics missing on {kafka.brokers}: rttm.dlq.events (run `rttm topics create`)",
    )


# -- scale-out ---------------------------------------------------------------------------


def test_workers_clusters_shard_counts_and_topic_splits_write_what_one_worker_writes(
    loaded: tuple[KafkaSettings, workload.Workload], new_database: Callable[[], str]
) -> None:
    kafka, work = loaded
    one, two, cluster, three_shards, by_topic = (migrated(new_database()) for _ in range(5))
    result = run_flow_process(flow_env(kafka, one))
    assert result.returncode == 0, result.stderr[-2000:]
    assert_complete(one, work)
    reference = snapshot(one)

    result = run_flow_process(flow_env(kafka, two), "-w", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert snapshot(two) == reference

    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.rttm", "-i", str(i), "-a", addresses],
            env=flow_env(kafka, cluster),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert snapshot(cluster) == reference

    result = run_flow_process(flow_env(kafka, three_shards, RTTM_SHARDS="3"), "-w", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert snapshot(three_shards) == reference

    trades = "rttm.trade.events"  # two independent processes splitting the topics
    subsets = [trades, ",".join(spec.name for spec in TOPICS if spec.name != trades)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.rttm"],
            env=flow_env(kafka, by_topic, RTTM_TOPICS=subset),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for subset in subsets
    ]
    outputs = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert snapshot(by_topic) == reference


# -- crashes and outages -------------------------------------------------------------------


def test_kill_9_mid_run_then_resume_with_more_shards_stores_each_event_once(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    create_topics(kafka)
    work = workload.build(300_000, seed=9)
    workload.produce(kafka.brokers, work)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)  # type: ignore[no-untyped-call]
    command = [
        sys.executable,
        "-m",
        "bytewax.run",
        "dataflows.rttm",
        "-r",
        str(recovery),
        "-s",
        "1",
        "-b",
        "0",
    ]
    env = flow_env(kafka, migrated_db)
    total = work.distinct["rttm_trade_events"]
    step = total // 8
    with psycopg.connect(migrated_db, autocommit=True) as conn:

        def trade_rows() -> int:
            row = conn.execute("SELECT count(*) FROM rttm_trade_events").fetchone()
            return int(row[0]) if row else 0

        # Kill each run once it has written another eighth; the second resumes the same
        # recovery store with one more shard (a redeploy that scaled the writers).
        for run, shards in enumerate(("2", "3", "3")):
            process = subprocess.Popen(
                command,
                env={**env, "RTTM_SHARDS": shards},
                cwd=REPO,
                stderr=subprocess.PIPE,
                text=True,
            )
            start = trade_rows()
            while process.poll() is None and trade_rows() <= start + step:
                time.sleep(0.02)
            running = process.poll() is None
            process.send_signal(signal.SIGKILL)
            _, err = process.communicate(timeout=60)
            assert running, f"run {run} ended before it could be killed: {err[-2000:]}"
            assert process.returncode == -signal.SIGKILL, err[-2000:]
            # Killed mid-write: it had stored rows of its own, and not all of them.
            assert start + step < trade_rows() < total, run
    final = run_flow_process({**env, "RTTM_SHARDS": "3"}, "-r", str(recovery), "-s", "1", "-b", "0")
    assert final.returncode == 0, final.stderr[-2000:]
    assert_complete(migrated_db, work)


def test_database_outage_loses_nothing_and_the_flow_waits(
    kafka: KafkaSettings, own_postgres: tuple[Path, int, list[PostgresProcess]], tmp_path: Path
) -> None:
    state, port, servers = own_postgres
    url = migrated(servers[0].url())
    create_topics(kafka)
    before, during = workload.build(6_000, seed=1), workload.build(6_000, seed=2)
    workload.produce(kafka.brokers, before)
    log = tmp_path / "flow.log"
    # The server's own password (scram) is in the URL: no outage message may show it.
    secret = str(psycopg.conninfo.conninfo_to_dict(url)["password"])
    with log.open("w") as err:
        flow = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.rttm"],
            env=flow_env(kafka, url, RTTM_TAIL="1"),
            cwd=REPO,
            stderr=err,
        )
    try:
        wait_for(lambda: counts(url)["rttm_trade_events"] == before.distinct["rttm_trade_events"])
        servers[0].stop()
        workload.produce(kafka.brokers, during)
        time.sleep(12)
        assert flow.poll() is None, log.read_text()[-2000:]
        servers.append(start_postgres(state, port, TEST_POSTGRES_SETTINGS))
        want = before.distinct["rttm_trade_events"] + during.distinct["rttm_trade_events"]
        wait_for(lambda: counts(url)["rttm_trade_events"] == want)
        assert flow.poll() is None
    finally:
        flow.send_signal(signal.SIGKILL)
        flow.wait(timeout=30)
    assert_complete(url, before, during)
    text = log.read_text()
    assert text.count("database unavailable") == 1, text[-3000:]
    assert text.count("database back") == 1, text[-3000:]
    assert secret not in text


# -- the command people run ----------------------------------------------------------------


def test_rttm_ingest_reports_progress_and_resumes_from_its_recovery_dir(
    loaded: tuple[KafkaSettings, workload.Workload], migrated_db: str, tmp_path: Path
) -> None:
    kafka, work = loaded
    command = [
        sys.executable,
        "-m",
        "rttm",
        "ingest",
        "--until-caught-up",
        "--recovery-dir",
        str(tmp_path / "rec"),
        "--snapshot-interval",
        "1",
    ]
    first = subprocess.run(
        command,
        env=flow_env(kafka, migrated_db),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"initialised recovery directory {tmp_path / 'rec'}" in first.stderr
    assert "with 1 worker(s), until caught up" in first.stderr
    rows = sum(work.distinct.values())
    summary = first.stderr.strip().splitlines()[-1]
    assert f"| rows {rows:,} | rejects {work.malformed:,} |" in summary
    assert_complete(migrated_db, work)
    # Down while more arrives: the restart reads exactly the new messages, and stores them.
    more = workload.build(4_000, seed=6)
    workload.produce(kafka.brokers, more)
    again = subprocess.run(
        command,
        env=flow_env(kafka, migrated_db),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    new_rows = sum(more.distinct.values())
    dropped = more.total - new_rows - more.malformed  # the new messages' own retries
    assert (
        f"| read {more.total:,} | rows {new_rows:,} | rejects {more.malformed:,}"
        f" | duplicates dropped {dropped:,} |"
    ) in again.stderr.strip().splitlines()[-1]
    assert_complete(migrated_db, work, more)

    started = time.monotonic()
    fewer = subprocess.run(
        command,
        env=flow_env(kafka, migrated_db, RTTM_SHARDS="1"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert time.monotonic() - started < 20
    assert fewer.returncode == 1
    assert fewer.stderr.strip().splitlines()[-1] == (
        f"rttm: error: recovery directory {tmp_path / 'rec'} holds state for 2 shards; "
        "RTTM_SHARDS=1 is fewer, which it cannot resume: use RTTM_SHARDS>=2 or a new "
        "recovery directory"
    )
