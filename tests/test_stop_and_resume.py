"""Stopping and restarting as operators do: signals, resuming from the database, offsets.

Signals go to the process group, as a terminal's Ctrl-C or a supervisor's SIGTERM do; each
command must end within seconds with one last line, no traceback and no Rust panic, and
what it says it stored must be what the tables hold.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from rttm.core.config import KafkaSettings
from rttm.stack.processes import free_port, port_answers
from support import workload
from tests.ingest_helpers import REPO, assert_complete, counts, create_topics, flow_env, migrated
from tests.metrics_helpers import metrics_rows, run_metrics, simulate
from tests.processes import BYTEWAX_RUN, RTTM, start, stop, wait_for

pytestmark = pytest.mark.integration


def stored_rows(url: str) -> tuple[int, int]:
    """(rows in the event tables, rows in the rejects table)."""
    table_counts = counts(url)
    rejects = table_counts.pop("rttm_ingest_rejects")
    return sum(table_counts.values()), rejects


def number(line: str, label: str) -> int:
    found = re.search(rf"\| {label} ([\d,]+)", line)
    assert found, f"no {label!r} in {line!r}"
    return int(found[1].replace(",", ""))


def trade_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM rttm_trade_events").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def backlog(kafka: KafkaSettings) -> workload.Workload:
    """Topics holding more than a second's worth of ingestion."""
    create_topics(kafka)
    work = workload.build(150_000, seed=13)
    workload.produce(kafka.brokers, work)
    return work


# -- the ingestion ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        (["ingest", "--lag-interval", "0"], signal.SIGINT),
        (["ingest", "--lag-interval", "0"], signal.SIGTERM),
        (["dataflows.rttm"], signal.SIGINT),
        (["dataflows.rttm"], signal.SIGTERM),
    ],
    ids=["rttm-ingest-SIGINT", "rttm-ingest-SIGTERM", "bytewax-run-SIGINT", "bytewax-run-SIGTERM"],
)
def test_a_signal_stops_the_ingestion_mid_run_with_what_it_stored(
    kafka: KafkaSettings,
    migrated_db: str,
    backlog: workload.Workload,
    command: list[str],
    sig: signal.Signals,
) -> None:
    env = flow_env(kafka, migrated_db, RTTM_TAIL="1")
    process = start([*(RTTM if command[0] == "ingest" else BYTEWAX_RUN), *command], env)
    wait_for(lambda: trade_rows(migrated_db) > 0)
    status, lines = stop(process, sig)
    assert status == 0, lines
    last = lines[-1]
    assert last.startswith("ingest: "), lines
    assert f"| stopped on {sig.name}; stored up to rttm.trade.events " in last
    rows, rejects = stored_rows(migrated_db)
    assert (number(last, "rows"), number(last, "rejects")) == (rows, rejects)
    assert rows < sum(backlog.distinct.values()), "stopped after the end: make the backlog larger"
    noise = [line for line in lines if not line.startswith(("ingest: ", "ingesting "))]
    assert noise == [], noise

    again = subprocess.run(
        [*RTTM, "ingest", "--until-caught-up", "--lag-interval", "0"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert_complete(migrated_db, backlog)
    resumed = again.stderr.strip().splitlines()[-1]
    assert number(resumed, "rows") == sum(backlog.distinct.values()) - rows


def test_a_bounded_run_cut_short_says_so_with_the_shell_convention(
    kafka: KafkaSettings, migrated_db: str, backlog: workload.Workload
) -> None:
    env = flow_env(kafka, migrated_db)
    process = start([*RTTM, "ingest", "--until-caught-up", "--lag-interval", "0"], env)
    wait_for(lambda: trade_rows(migrated_db) > 0)
    status, lines = stop(process, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, lines
    assert "| stopped on SIGTERM; " in lines[-1]


def test_without_a_recovery_store_a_restart_reads_only_what_is_new(
    kafka: KafkaSettings, migrated_db: str
) -> None:
    create_topics(kafka)
    first, second = workload.build(20_000, seed=1), workload.build(5_000, seed=2)
    workload.produce(kafka.brokers, first)
    command = [*RTTM, "ingest", "--until-caught-up", "--lag-interval", "0", "--metrics-port"]
    env = flow_env(kafka, migrated_db, RTTM_TAIL="1")
    ran = subprocess.run(
        [*command, str(free_port())],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    workload.produce(kafka.brokers, second)
    port = free_port()
    process = start([*RTTM, "ingest", "--lag-interval", "0", "--metrics-port", str(port)], env)
    want = sum(first.distinct.values()) + sum(second.distinct.values())
    wait_for(lambda: stored_rows(migrated_db)[0] == want)
    wait_for(lambda: port_answers(port))
    time.sleep(1.0)  # the source's counter is updated before the rows are committed
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as page:
        exposed = page.read().decode()
    read = re.search(r"^rttm_ingest_messages_read_total (\S+)$", exposed, re.MULTILINE)
    assert read, exposed[:2000]
    assert float(read[1]) == second.total  # the first run's messages were not read again
    status, _ = stop(process, signal.SIGTERM)
    assert status == 0


def test_a_database_restored_behind_its_recovery_store_is_given_every_row_again(
    kafka: KafkaSettings, migrated_db: str, postgres_admin_url: str, tmp_path: Path
) -> None:
    create_topics(kafka)
    before, after = workload.build(20_000, seed=3), workload.build(10_000, seed=4)
    recovery = str(tmp_path / "recovery")
    command = [
        *RTTM,
        "ingest",
        "--until-caught-up",
        "--lag-interval",
        "0",
        "--recovery-dir",
        recovery,
        "--snapshot-interval",
        "1",
    ]

    def ingest_into(url: str) -> str:
        ran = subprocess.run(
            command,
            env=flow_env(kafka, url),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr[-2000:]
        return ran.stderr

    workload.produce(kafka.brokers, before)
    ingest_into(migrated_db)
    name = str(psycopg.conninfo.conninfo_to_dict(migrated_db)["dbname"])
    backup = f"{name}_backup"  # a real copy of the database as it is now
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        copy = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
        admin.execute(copy.format(sql.Identifier(backup), sql.Identifier(name)))
    try:
        workload.produce(kafka.brokers, after)
        ingest_into(migrated_db)  # the recovery store moves past the backup
        restored = psycopg.conninfo.make_conninfo(migrated_db, dbname=backup)
        err = ingest_into(restored)
        table_counts = counts(restored)
        assert table_counts.pop("rttm_ingest_rejects") == before.malformed + after.malformed
        assert table_counts == {t: before.distinct[t] + after.distinct[t] for t in table_counts}
        assert "is behind the recovery snapshot's" in err
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(backup)))


# -- the metrics flow ---------------------------------------------------------------------


def test_rttm_metrics_stopped_mid_run_resumes_to_what_an_uninterrupted_run_computes(
    kafka: KafkaSettings, new_database: Callable[[], str], tmp_path: Path
) -> None:
    create_topics(kafka)
    events = simulate(kafka, seconds=600, rate=60)
    reference = migrated(new_database())
    whole = run_metrics(flow_env(kafka, reference))
    assert whole.returncode == 0, whole.stderr[-3000:]

    url = migrated(new_database())
    command = [
        *RTTM,
        "metrics",
        "--until-caught-up",
        "--recovery-dir",
        str(tmp_path / "rec"),
        "--snapshot-interval",
        "1",
    ]
    process = start(command, flow_env(kafka, url))
    wait_for(lambda: metrics_rows(url) != [])
    status, lines = stop(process, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, lines  # cut short before the end
    assert lines[-1].startswith("metrics: ")
    assert lines[-1].endswith("| stopped on SIGTERM")
    assert number(lines[-1], "events") < len(events), "stopped after the end: more events"

    resumed = subprocess.run(
        command,
        env=flow_env(kafka, url),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert number(resumed.stderr.strip().splitlines()[-1], "windows closed") > 0
    assert metrics_rows(url) == metrics_rows(reference)

    other_window = subprocess.run(
        command,
        env=flow_env(kafka, url, RTTM_METRICS_WINDOW="5s"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert other_window.returncode == 1
    assert other_window.stderr.strip().splitlines()[-1] == (
        "rttm: error: the recovery store's metrics state was made with a 10s window and 2"
        " shards, not 5s and 2: keep RTTM_METRICS_WINDOW and RTTM_METRICS_SHARDS, or start a"
        " new store"
    )


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        ([*RTTM, "metrics"], signal.SIGINT),
        ([*RTTM, "metrics"], signal.SIGTERM),
        ([*BYTEWAX_RUN, "dataflows.metrics"], signal.SIGINT),
        ([*BYTEWAX_RUN, "dataflows.metrics"], signal.SIGTERM),
    ],
    ids=[
        "rttm-metrics-SIGINT",
        "rttm-metrics-SIGTERM",
        "bytewax-run-SIGINT",
        "bytewax-run-SIGTERM",
    ],
)
def test_a_signal_stops_the_following_metrics_flow_with_one_line(
    kafka: KafkaSettings, migrated_db: str, command: list[str], sig: signal.Signals
) -> None:
    create_topics(kafka)
    simulate(kafka, seconds=60, rate=20)
    process = start(command, flow_env(kafka, migrated_db, RTTM_TAIL="1"))
    wait_for(lambda: metrics_rows(migrated_db) != [])
    status, lines = stop(process, sig)
    assert status == 0, lines
    assert lines[-1].startswith("metrics: "), lines
    assert lines[-1].endswith(f"| stopped on {sig.name}")
    assert number(lines[-1], "windows closed") > 0
    noise = [line for line in lines[:-1] if not line.startswith("computing metrics from ")]
    assert noise == [], noise


# -- the dashboard ------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_dashboard_with_one_line(migrated_db: str, sig: signal.Signals) -> None:
    port = free_port()
    env = {**os.environ, "RTTM_DATABASE_URL": migrated_db}
    process = start([*RTTM, "serve", "--port", str(port), "--allow-writer-role"], env)
    wait_for(lambda: port_answers(port), timeout=30)
    status, lines = stop(process, sig)
    assert status == 0
    assert lines[-1] == f"dashboard stopped on {sig.name}"
    assert len(lines) == 2, lines


def test_ctrl_c_twice_stops_the_dashboard_as_once(migrated_db: str) -> None:
    # uvicorn passes on every signal it caught while shutting down: the second must not
    # turn a clean stop into a forced one.
    port = free_port()
    process = start(
        [*RTTM, "serve", "--port", str(port), "--allow-writer-role"],
        {**os.environ, "RTTM_DATABASE_URL": migrated_db},
    )
    wait_for(lambda: port_answers(port), timeout=30)
    os.killpg(process.pid, signal.SIGINT)
    status, lines = stop(process, signal.SIGINT)
    assert (status, lines[-1]) == (0, "dashboard stopped on SIGINT"), lines
