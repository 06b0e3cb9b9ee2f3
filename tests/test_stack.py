"""``rttm up`` / ``env`` / ``down``: the local stack as a user runs it, in real processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from rttm import stack
from rttm.core.registry import TOPICS, all_tables
from rttm.stack.processes import free_port, pid_alive, port_answers

pytestmark = pytest.mark.integration


def rttm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rttm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def exports(stdout: str) -> dict[str, str]:
    """Parse the ``export NAME=value`` lines; fails on anything else on stdout."""
    parsed = {}
    for line in stdout.splitlines():
        assert line.startswith("export "), f"unexpected stdout line: {line!r}"
        name, _, value = line.removeprefix("export ").partition("=")
        parsed[name] = value
    return parsed


def test_up_starts_migrates_creates_topics_and_is_reused(user_env: dict[str, str]) -> None:
    ports = [
        "--kafka-port",
        str(free_port()),
        "--postgres-port",
        str(free_port()),
        "--partitions",
        "2",
    ]
    first = rttm("up", *ports, env=user_env)
    assert first.returncode == 0, first.stderr
    env = exports(first.stdout)
    assert set(env) == {"RTTM_KAFKA_BROKERS", "RTTM_DATABASE_URL"}
    assert env["RTTM_KAFKA_BROKERS"].startswith("127.0.0.1:")
    assert env["RTTM_DATABASE_URL"].startswith("postgresql://postgres:")  # its password
    assert "broker started" in first.stderr
    assert "postgres started" in first.stderr
    assert "ready. Next:" in first.stderr

    with psycopg.connect(env["RTTM_DATABASE_URL"]) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables").fetchall()}
    assert set(all_tables()) <= tables

    with_env = {**user_env}
    listing = rttm("topics", "list", env=with_env)  # found through the state directory
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[:2] for line in listing.stdout.splitlines()[1:]] == [
        [spec.name, "2"] for spec in TOPICS
    ]

    second = rttm("up", *ports, env=user_env)
    assert second.returncode == 0, second.stderr
    assert exports(second.stdout) == env
    assert "broker already running" in second.stderr
    assert "postgres already running" in second.stderr
    assert "is up to date" in second.stderr
    assert "topics created: none (all exist)" in second.stderr

    assert exports(rttm("env", env=user_env).stdout) == env
    evaluated = rttm("up", *ports, env={**user_env, **env})  # after eval "$(rttm up)"
    assert evaluated.returncode == 0, evaluated.stderr
    assert exports(evaluated.stdout) == env
    assert "broker already running" in evaluated.stderr
    assert "postgres already running" in evaluated.stderr
    running = stack.running_stack(Path(user_env["RTTM_STATE_DIR"]))
    assert running is not None
    assert running.broker is not None
    assert running.postgres is not None
    for port in (running.broker.port, running.postgres.port):
        assert port_answers(port)
        # Bound to 127.0.0.1 itself, not to every address: another loopback address is refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=2).close()

    down = rttm("down", env=user_env)
    assert down.returncode == 0
    assert "postgres stopped" in down.stderr
    assert "broker stopped" in down.stderr
    assert not pid_alive(running.broker.pid)
    assert not pid_alive(running.postgres.pid)
    gone = rttm("env", env=user_env)
    assert gone.returncode == 1
    assert gone.stderr == "rttm: error: no local stack is running: start it with `rttm up`\n"


def test_up_with_external_database_runs_no_local_postgres(
    user_env: dict[str, str], fresh_db: str
) -> None:
    env = {**user_env, "RTTM_DATABASE_URL": fresh_db}
    result = rttm("up", "--kafka-port", str(free_port()), env=env)
    assert result.returncode == 0, result.stderr
    assert set(exports(result.stdout)) == {"RTTM_KAFKA_BROKERS"}
    assert "postgres started" not in result.stderr
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM rttm_schema_migrations").fetchone() != (0,)


def test_taken_port_falls_back_to_a_free_one(user_env: dict[str, str], fresh_db: str) -> None:
    taken = int(psycopg.conninfo.conninfo_to_dict(fresh_db).get("port") or 5432)
    env = {**user_env, "RTTM_DATABASE_URL": fresh_db}
    result = rttm("up", "--kafka-port", str(taken), "--no-init", env=env)
    assert result.returncode == 0, result.stderr
    assert exports(result.stdout)["RTTM_KAFKA_BROKERS"] != f"127.0.0.1:{taken}"


def test_commands_without_servers_say_how_to_get_them(user_env: dict[str, str]) -> None:
    result = rttm("db", "migrate", env=user_env)
    assert result.returncode == 1
    assert result.stderr == (
        "rttm: error: RTTM_DATABASE_URL is not set and no local stack provides it:"
        " run `rttm up` or set RTTM_DATABASE_URL\n"
    )


def test_unreachable_database_is_one_line_without_password(user_env: dict[str, str]) -> None:
    port = free_port()
    env = {**user_env, "RTTM_DATABASE_URL": f"postgresql://rttm:s3cret-pw@127.0.0.1:{port}/rttm"}
    result = rttm("db", "migrate", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"rttm: error: cannot connect to postgres at 127.0.0.1:{port}/rttm: "
    )
    assert len(result.stderr.splitlines()) == 1
    assert "s3cret" not in result.stderr + result.stdout


def test_malformed_database_url_hides_its_content(user_env: dict[str, str]) -> None:
    env = {**user_env, "RTTM_DATABASE_URL": "postgresql://u:s3cret@host:notaport/db?bad=1"}
    result = rttm("db", "status", env=env)
    assert result.returncode == 1
    assert "s3cret" not in result.stderr
    assert result.stderr.startswith("rttm: error: ")
