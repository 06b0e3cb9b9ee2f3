"""Fixtures of the micro benchmarks: a private, durable PostgreSQL, and an items/s summary.

The server is the one ``rttm up`` runs (``rttm.stack``) with its default, durable settings,
so sink figures are what a deployment sees, unlike the test suite's ``fsync=off`` server.
Every benchmark that processes a batch per round sets ``benchmark.extra_info["items"]``;
the summary at the end turns the median round into items per second.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from rttm.core.db import prepare
from rttm.stack.pgdata import purge_under
from rttm.stack.postgres import start_postgres
from rttm.stack.processes import free_port


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Superuser URL of a PostgreSQL started for this benchmark session."""
    folder = tmp_path_factory.mktemp("pg")
    server = start_postgres(folder, free_port())
    try:
        yield server.url("postgres")
    finally:
        server.stop()
        purge_under(folder)  # as root the data lives under /var/lib/rttm-postgres


@pytest.fixture
def migrated_db(postgres_admin_url: str) -> Iterator[str]:
    """URL of a new migrated database, dropped after the benchmark."""
    name = f"rttm_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(postgres_admin_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
    yield url
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Items per second of each benchmark that says how many items a round handles."""
    session = terminalreporter.config._benchmarksession  # type: ignore[attr-defined]
    rows = [
        (bench.group or "", bench.name, bench.extra_info["items"], bench.stats.median)
        for bench in session.benchmarks
        if bench.extra_info.get("items") and bench.stats
    ]
    if not rows:
        return
    terminalreporter.section("items per second (median round)")
    group = None
    for bench_group, name, items, median in sorted(rows):
        if bench_group != group:
            group = bench_group
            terminalreporter.write_line(f"{group}")
        terminalreporter.write_line(
            f"  {name:<44} {median / items * 1e6:>8.2f} µs/item {items / median:>12,.0f} items/s"
        )
