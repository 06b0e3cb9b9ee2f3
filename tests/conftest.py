"""Shared fixtures: a real Kafka-protocol broker and a real PostgreSQL, started here; real
alert receivers; a real browser; the entry points a dataflow runs under in this process.

The servers come from the same code as ``rttm up`` (``rttm.stack``). Set
``RTTM_TEST_DATABASE_URL`` (a superuser URL) to test against an existing PostgreSQL instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main
from playwright.sync_api import Browser, sync_playwright
from psycopg import sql

from rttm.core.config import KafkaSettings
from rttm.core.db import prepare
from rttm.stack.broker import BrokerProcess, start_broker
from rttm.stack.pgdata import purge_under
from rttm.stack.postgres import PostgresProcess, start_postgres
from rttm.stack.processes import free_port
from tests.alerting import Alertmanager, WebhookServer

#: Durability is not what these tests check; skipping fsync keeps DDL-heavy tests fast.
TEST_POSTGRES_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
CHROMIUM = Path("/usr/bin/chromium")
#: Runs a bounded dataflow to its end in this process.
EntryPoint = Callable[[Dataflow], None]


@contextlib.contextmanager
def postgres_home() -> Iterator[Path]:
    """A folder for a test PostgreSQL's state, outside pytest's temporary root.

    As root, the data of a state directory lives under /var/lib/rttm-postgres
    (``rttm.stack.pgdata``): it is deleted with the folder.
    """
    home = Path(tempfile.mkdtemp(prefix="rttm-test-pg-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
        purge_under(home)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A superuser URL of a running PostgreSQL: ``RTTM_TEST_DATABASE_URL`` or one we start."""
    if url := os.environ.get("RTTM_TEST_DATABASE_URL"):
        yield url
        return
    with postgres_home() as home:
        server = start_postgres(home, free_port(), settings=TEST_POSTGRES_SETTINGS)
        try:
            yield server.url("postgres")
        finally:
            server.stop()


@pytest.fixture
def user_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A user's environment: no RTTM_* servers given, a private state directory.

    Afterwards ``rttm down --purge`` stops and deletes whatever ``rttm up`` made there.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTTM_")}
    env["RTTM_STATE_DIR"] = str(tmp_path / "state")
    yield env
    subprocess.run(
        [sys.executable, "-m", "rttm", "down", "--purge"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    purge_under(tmp_path)  # as root, data lives under /var/lib/rttm-postgres


@pytest.fixture
def own_postgres() -> Iterator[tuple[Path, int, list[PostgresProcess]]]:
    """A PostgreSQL this test may stop and start: (state dir, port, [current server])."""
    port = free_port()
    with postgres_home() as home:
        servers = [start_postgres(home / "pg", port, TEST_POSTGRES_SETTINGS)]
        yield home / "pg", port, servers
        for server in servers:
            if server.is_up():
                server.stop()


def _with_dbname(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture
def new_database(postgres_admin_url: str) -> Iterator[Callable[[], str]]:
    """Makes new, empty databases (URL each), all dropped after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"rttm_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return _with_dbname(postgres_admin_url, name)

    yield make
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        for name in made:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def fresh_db(new_database: Callable[[], str]) -> str:
    """URL of a new, empty database, dropped after the test."""
    return new_database()


@pytest.fixture
def migrated_db(fresh_db: str) -> str:
    """URL of a new database as `rttm db migrate` leaves it."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        prepare(conn)
    return fresh_db


@pytest.fixture
def db(migrated_db: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection to a migrated database."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        yield conn


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A fresh broker per test: memory storage starts with no topics, and starts in ms."""
    process = start_broker(tmp_path / "broker", free_port())
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def kafka(broker: BrokerProcess) -> KafkaSettings:
    """Client settings for the test's broker."""
    return KafkaSettings(brokers=broker.bootstrap, extra={})


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    """A webhook receiver on 127.0.0.1 that records what it is sent."""
    server = WebhookServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: WebhookServer) -> Iterator[Alertmanager]:
    """A real Alertmanager on a free port, routing every alert to ``webhook``."""
    directory = tmp_path / "alertmanager"
    directory.mkdir()
    manager = Alertmanager(directory, webhook.url)
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        how = (
            "run ./dev setup (installs it with apt-get) or: apt-get install chromium"
            if shutil.which("apt-get")
            else "there is no apt-get here: install Chromium so that it runs as " + str(CHROMIUM)
        )
        pytest.fail(f"{CHROMIUM} not found: the browser test drives Debian's chromium; {how}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def one_worker(flow: Dataflow) -> None:
    """``flow`` on one worker (``run_main``)."""
    run_main(flow)  # type: ignore[no-untyped-call]


def two_workers(flow: Dataflow) -> None:
    """``flow`` on a cluster of two workers in this process (``cluster_main``)."""
    cluster_main(flow, [], 0, worker_count_per_proc=2)  # type: ignore[no-untyped-call]


@pytest.fixture(params=[one_worker, two_workers], ids=["1-worker", "2-workers"])
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    """Each way a flow runs: the test runs once on one worker, once on a two-worker cluster."""
    run: EntryPoint = request.param
    return run


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test was skipped: services are started here, never skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        reporter.write_line(
            "error: tests were skipped; this suite starts its services, never skips"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
