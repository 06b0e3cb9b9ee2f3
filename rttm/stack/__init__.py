"""The local stack: a Kafka-protocol broker and a PostgreSQL server for one laptop.

``rttm up`` and the test fixtures both use :func:`up` / :func:`down`. Servers run in the
background; what runs is recorded in ``stack.json`` inside the state directory, so a second
``up`` reuses it and any ``rttm`` command finds it when the ``RTTM_*`` addresses are unset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

from rttm.core.safe_paths import check_private_dir, open_private
from rttm.stack import pgdata
from rttm.stack.broker import LOG_NAME as BROKER_LOG
from rttm.stack.broker import BrokerProcess, start_broker
from rttm.stack.postgres import LOG_NAME as POSTGRES_LOG
from rttm.stack.postgres import PostgresProcess, start_postgres
from rttm.stack.processes import free_port, pid_alive, port_is_free

STATE_FILE = "stack.json"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_POSTGRES_PORT = 5433


@dataclass(frozen=True)
class LocalStack:
    """What the local stack runs; a server is ``None`` where an external one is used."""

    broker: BrokerProcess | None
    postgres: PostgresProcess | None

    @property
    def kafka_brokers(self) -> str:
        """``RTTM_KAFKA_BROKERS`` of the local broker."""
        if self.broker is None:
            msg = "the local stack runs no broker: set RTTM_KAFKA_BROKERS"
            raise LookupError(msg)
        return self.broker.bootstrap

    @property
    def database_url(self) -> str:
        """``RTTM_DATABASE_URL`` of the local PostgreSQL."""
        if self.postgres is None:
            msg = "the local stack runs no PostgreSQL: set RTTM_DATABASE_URL"
            raise LookupError(msg)
        return self.postgres.url()

    def env(self) -> dict[str, str]:
        """The ``RTTM_*`` environment that points at this stack."""
        env = {}
        if self.broker is not None:
            env["RTTM_KAFKA_BROKERS"] = self.kafka_brokers
        if self.postgres is not None:
            env["RTTM_DATABASE_URL"] = self.database_url
        return env


def check_state_dir(state_dir: Path) -> None:
    """Refuse a state directory another user could write (it names pids we signal)."""
    check_private_dir(state_dir, "state directory (RTTM_STATE_DIR)")


def _read_state(state_dir: Path, with_password: bool = True) -> LocalStack | None:
    check_state_dir(state_dir)
    try:
        raw = json.loads((state_dir / STATE_FILE).read_text())
        broker = BrokerProcess(**raw["broker"]) if raw.get("broker") else None
        postgres = PostgresProcess(**raw["postgres"]) if raw.get("postgres") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if postgres is not None and with_password:
        postgres = replace(postgres, password=pgdata.read_password(state_dir))
    return LocalStack(broker=broker, postgres=postgres)


def _write_state(state_dir: Path, stack: LocalStack) -> None:
    postgres = stack.postgres and asdict(stack.postgres)
    if postgres:
        del postgres["password"]  # kept in its own 0600 file only
    state = {"broker": stack.broker and asdict(stack.broker), "postgres": postgres}
    tmp = state_dir / (STATE_FILE + ".tmp")
    with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w") as out:
        out.write(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_dir / STATE_FILE)


def running_stack(state_dir: Path) -> LocalStack | None:
    """The stack recorded in ``state_dir`` if all of its servers answer, else ``None``."""
    stack = _read_state(state_dir)
    if stack is None:
        return None
    servers = [s for s in (stack.broker, stack.postgres) if s is not None]
    return stack if servers and all(s.is_up() for s in servers) else None


def _port(preferred: int) -> int:
    """``preferred`` if it is free, else any free port (0 asks for any)."""
    return preferred if preferred and port_is_free(preferred) else free_port()


Server = TypeVar("Server", BrokerProcess, PostgresProcess)


def _settle(
    name: str,
    recorded: Server | None,
    wanted: bool,
    variable: str,
    start: Callable[[], Server],
    say: Callable[[str], None],
) -> Server | None:
    """Reuse one server if it runs, else start it if ``wanted``.

    A running server is never stopped here, even when ``variable`` points elsewhere:
    ``rttm down`` stops the stack.
    """
    running = recorded if recorded is not None and recorded.is_up() else None
    if running is not None:
        say(f"{name} already running on port {running.port} (pid {running.pid})")
        return running
    if not wanted:
        say(f"no local {name}: {variable} points elsewhere")
        return None
    server = start()
    say(f"{name} started on port {server.port} (pid {server.pid})")
    return server


def up(
    state_dir: Path,
    *,
    with_broker: bool = True,
    with_postgres: bool = True,
    kafka_port: int = DEFAULT_KAFKA_PORT,
    postgres_port: int = DEFAULT_POSTGRES_PORT,
    postgres_settings: dict[str, str] | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> LocalStack:
    """Start what of the stack is wanted and not running yet, reuse what runs; record it.

    Args:
        state_dir: where data, logs and ``stack.json`` live.
        with_broker: run the local broker (``False`` when ``RTTM_KAFKA_BROKERS`` is set).
        with_postgres: run the local PostgreSQL (``False`` when ``RTTM_DATABASE_URL`` is set).
        kafka_port: preferred broker port; another free one is used when it is taken.
        postgres_port: preferred PostgreSQL port, likewise.
        postgres_settings: extra PostgreSQL settings for a newly started server.
        say: receives one progress line per step.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    previous = _read_state(state_dir) or LocalStack(broker=None, postgres=None)
    broker = _settle(
        "broker",
        previous.broker,
        with_broker,
        "RTTM_KAFKA_BROKERS",
        lambda: start_broker(state_dir, _port(kafka_port)),
        say,
    )
    postgres = _settle(
        "postgres",
        previous.postgres,
        with_postgres,
        "RTTM_DATABASE_URL",
        lambda: start_postgres(state_dir, _port(postgres_port), postgres_settings),
        say,
    )
    stack = LocalStack(broker=broker, postgres=postgres)
    _write_state(state_dir, stack)
    return stack


def down(
    state_dir: Path, say: Callable[[str], None] = lambda _line: None, *, purge: bool = False
) -> bool:
    """Stop the servers recorded in ``state_dir``; ``False`` if nothing was recorded.

    Data stays in the state directory (the broker's topics do not: memory storage), unless
    ``purge``: then the local PostgreSQL's data, password, logs and ``stack.json`` go too.
    """
    stack = _read_state(state_dir, with_password=False) if state_dir.is_dir() else None
    servers: list[tuple[str, BrokerProcess | PostgresProcess | None]] = [
        ("postgres", stack.postgres if stack else None),
        ("broker", stack.broker if stack else None),
    ]
    for name, server in servers:
        if server is None:
            continue
        # A recorded pid is signalled only if it is still the server started: after a
        # reboot, or in a forged stack.json, it may name an unrelated process.
        if server.is_ours():
            server.stop()
            say(f"{name} stopped (pid {server.pid})")
        elif pid_alive(server.pid):
            say(
                f"warning: {name} pid {server.pid} in {STATE_FILE} is not the server rttm "
                "started (its start time or program differs): not signalled"
            )
        else:
            say(f"{name} was not running")
    if stack is not None:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    if purge:
        _purge(state_dir, say)
    return stack is not None


def _purge(state_dir: Path, say: Callable[[str], None]) -> None:
    """Delete the local data of ``state_dir``, saying what went and what stays."""
    removed = pgdata.purge(state_dir)
    for log in (BROKER_LOG, POSTGRES_LOG):
        if os.path.lexists(state_dir / log):
            (state_dir / log).unlink()
            removed.append(state_dir / log)
    say(f"deleted {', '.join(map(str, removed))}" if removed else "no local data to delete")
    if os.geteuid() == 0 and pgdata.user_exists():
        say(
            f"the system user {pgdata.SYSTEM_USER} stays (it may serve other state "
            f"directories): remove it with `userdel {pgdata.SYSTEM_USER}`"
        )
