"""Test plumbing shared by the view tests: an app served for real, a database per module,
the CLI against a given database or a run of the flows."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI
from psycopg import sql

from rttm.core.addresses import LOCALHOST
from rttm.core.contracts import Message, TradeEvent
from rttm.core.db import prepare
from rttm.stack.processes import free_port
from tests.ingest_helpers import REPO

#: How long an app served from a thread may take to start.
SERVER_START_S = 10.0


@contextlib.contextmanager
def serving(app: FastAPI, name: str = "test-server", **options: Any) -> Iterator[str]:
    """``app`` served by uvicorn from a thread, on a free port of 127.0.0.1: its base URL.

    ``options`` go to ``uvicorn.Config`` (``ssl_certfile``/``ssl_keyfile``: an https URL).
    """
    port = free_port()
    config = uvicorn.Config(
        app, host=LOCALHOST, port=port, log_level="warning", ws="none", lifespan="off", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                msg = f"the app did not start on {LOCALHOST}:{port}"
                raise RuntimeError(msg)
            time.sleep(0.02)
        scheme = "https" if options.get("ssl_certfile") else "http"
        yield f"{scheme}://{LOCALHOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def migrated_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new migrated database (its URL) for longer than one test; dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            prepare(conn)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def rttm_against(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``rttm ARGS`` with ``RTTM_DATABASE_URL=url`` and no other RTTM setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTTM_")}
    return subprocess.run(
        [sys.executable, "-m", "rttm", *args],
        env={**env, "RTTM_DATABASE_URL": url},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class Run:
    """A filled database: its URL, the environment commands run with, the events sent to it."""

    url: str
    env: dict[str, str]
    events: list[Message]

    def trades(self) -> dict[str, list[TradeEvent]]:
        by_id: dict[str, list[TradeEvent]] = {}
        for event in self.events:
            if isinstance(event, TradeEvent):
                by_id.setdefault(event.trade_id, []).append(event)
        return by_id


def rttm(run: Run, *args: str) -> subprocess.CompletedProcess[str]:
    """``rttm ARGS`` in the run's environment."""
    return subprocess.run(
        [sys.executable, "-m", "rttm", *args],
        env=run.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
