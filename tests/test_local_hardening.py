"""The local stack and the CLI against a local attacker (issue 18, item 7), in real processes.

Password login to the local PostgreSQL, logs that refuse symlinks, pids checked before
``rttm down`` signals them, data and state directories checked before they are trusted,
producer text escaped before it reaches a terminal, and errors that keep values secret.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rttm.cli import run_flow, screens
from rttm.core.config import ConfigError, KafkaSettings
from rttm.core.errors import RttmError
from rttm.emit import Emitter
from rttm.stack import pgdata
from rttm.stack.broker import start_broker
from rttm.stack.postgres import bin_dir
from rttm.stack.processes import free_port, pid_alive, start_time

AS_ROOT = os.geteuid() == 0


def rttm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rttm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    """The error: one line, the last on stderr (after any progress lines), no traceback."""
    assert result.returncode == 1, result.stderr
    line = result.stderr.splitlines()[-1]
    assert line.startswith("rttm: error: "), result.stderr
    assert result.stderr.count("error") == 1
    assert "Traceback" not in result.stderr
    for part in parts:
        assert part in line
    return line


def _modes(paths: list[Path]) -> dict[Path, int]:
    return {p: p.stat().st_mode for path in paths for p in (path, *path.parents) if p.exists()}


@pytest.mark.integration
def test_local_postgres_wants_its_password_and_leaves_folders_alone(
    user_env: dict[str, str],
) -> None:
    state = Path(user_env["RTTM_STATE_DIR"])
    watched = [Path.home(), state.parent, bin_dir()]
    before = _modes(watched)
    ports = ["--kafka-port", str(free_port()), "--postgres-port", str(free_port()), "--no-init"]
    up = rttm("up", *ports, env=user_env)
    assert up.returncode == 0, up.stderr
    url = next(line for line in up.stdout.splitlines() if "RTTM_DATABASE_URL" in line)
    url = url.split("=", 1)[1].strip("'")
    with psycopg.connect(url) as conn:  # the URL `rttm up` exports logs in
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    no_password = url.replace(url[url.index(":", 13) : url.index("@")], "")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(no_password, connect_timeout=5).close()
    assert _modes(watched) == before  # /root (as root) and the venv keep their modes
    password = state / pgdata.PASSWORD_NAME
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    assert password.read_text().strip() not in (state / "stack.json").read_text()
    assert rttm("env", env=user_env).stdout == up.stdout

    down = rttm("down", "--purge", env=user_env)
    assert down.returncode == 0, down.stderr
    assert "postgres stopped" in down.stderr
    assert not password.exists()
    assert not pgdata.data_dir(state, AS_ROOT).exists()
    assert ("userdel rttm-postgres" in down.stderr) == AS_ROOT


@pytest.mark.integration
def test_a_data_directory_rttm_did_not_make_is_refused(user_env: dict[str, str]) -> None:
    state = Path(user_env["RTTM_STATE_DIR"])
    planted = pgdata.data_dir(state, AS_ROOT)
    planted.mkdir(parents=True, mode=0o700)
    (planted / "PG_VERSION").write_text("18\n")
    (planted / "pg_hba.conf").write_text("host all all 0.0.0.0/0 trust\n")
    if AS_ROOT:  # made as the server user would have, so only the content gives it away
        user = pgdata.server_user()
        assert user is not None
        os.chown(planted, user.pw_uid, user.pw_gid)
    env = {**user_env, "RTTM_KAFKA_BROKERS": "127.0.0.1:1"}
    result = rttm("up", "--postgres-port", str(free_port()), "--no-init", env=env)
    one_line(result, f"refusing the data directory {planted}: ", "pg_hba.conf", "--purge")


def test_a_symlinked_log_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "broker.log").symlink_to(target)
    with pytest.raises(RttmError, match=r"broker\.log: it is a symlink"):
        start_broker(state, free_port())
    assert target.read_text() == "keep me\n"


def test_down_does_not_signal_a_pid_that_is_not_its_server(
    user_env: dict[str, str],
) -> None:
    state = Path(user_env["RTTM_STATE_DIR"])
    state.mkdir(mode=0o700)
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            started = start_time(sleeper.pid)
            forged = {  # the right pid and start time, or the right program: never both
                "broker": {
                    "pid": sleeper.pid,
                    "port": 1,
                    "start_time": started,
                    "program": "/opt/tansu",
                },
                "postgres": {
                    "pid": sleeper.pid,
                    "port": 2,
                    "pgdata": "/nowhere",
                    "start_time": 1,
                    "program": "sleep",
                },
            }
            (state / "stack.json").write_text(json.dumps(forged))
            down = rttm("down", env=user_env)
            assert down.returncode == 0, down.stderr
            assert down.stderr.count(f"pid {sleeper.pid} in stack.json is not the server") == 2
            assert pid_alive(sleeper.pid)
        finally:
            sleeper.kill()


def test_a_state_or_recovery_directory_others_can_write_is_refused(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    state = Path(user_env["RTTM_STATE_DIR"])
    state.mkdir()
    state.chmod(0o777)
    one_line(rttm("env", env=user_env), f"{state} is writable by group or others: chmod go-w")
    one_line(rttm("down", env=user_env), f"chmod go-w {state}")

    recovery = tmp_path / "recovery"
    recovery.mkdir(mode=0o700)
    (recovery / "part-0.sqlite3").write_bytes(b"")
    (recovery / "part-0.sqlite3").chmod(0o666)
    with pytest.raises(RttmError, match=r"part-0\.sqlite3 is writable by group or others"):
        run_flow.recovery(recovery, 0.0)
    recovery.chmod(0o757)
    with pytest.raises(RttmError, match=f"chmod go-w {recovery}$"):
        run_flow.recovery(recovery, 0.0)
    env = {**user_env, "RTTM_KAFKA_BROKERS": "127.0.0.1:1", "RTTM_DATABASE_URL": "x"}
    command = ["-m", "bytewax.run", "dataflows.rttm", "-r", str(recovery), "-s", "5", "-b", "0"]
    flow = subprocess.run(
        [sys.executable, *command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    one_line(flow, f"recovery directory (-r) {recovery} is writable by group or others")


HOSTILE = "x\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil\r\x7f"
RAW = ("\x1b]", "\x1b[2J", "\x07", "\x9b", "\u202e", "\r", "\x7f")


def _alert(text: str) -> dict[str, Any]:
    return {
        "state": "firing",
        "severity": text,
        "rule": text,
        "labels": {text: text},
        "value": 1.0,
        "started_at": text,
        "resolved_at": None,
        "at": text,
        "delivery": text,
        "delivery_error": text,
        "silenced_by": [text],
    }


def _screens(text: str) -> list[list[screens.Block]]:
    event = {
        "time": text,
        "service": text,
        "event_type": text,
        "status": text,
        "source_queue": text,
        "target_queue": None,
        "since_previous_ms": 1,
        "message": text,
        "reason": text,
        "topic": text,
        "error_type": text,
        "error_message": text,
        "level": text,
        "category": text,
    }
    trace = {
        "trade_id": text,
        "outcome": text,
        "stage": text,
        "total": 9,
        "next": text,
        "stuck": {"recovered_at": None, "stage": text, "service": text, "last_event_time": text},
        "events": [event],
        "dlq": [event],
        "dlq_total": 5,
        "errors": [event],
        "errors_total": 1,
        "logs": [event],
        "logs_total": 1,
    }
    none = {"by_service": 0, "depth": 0}
    status = {
        "as_of": text,
        "window_seconds": 10.0,
        "minutes": 5,
        "tps": {
            "now": 1.0,
            "avg": 1.0,
            "omitted": none,
            "by_service": [{"service": text, "now": 1.0, "avg": 2.0}],
        },
        "trades": {"started": 1, "completed": 1, "rejected": 0},
        "dlq": {"depth": [{"topic": text, "depth": 3}], "omitted": none},
        "omitted": {"consumers": 2, "errors": 0, "stuck": 0},
        "consumers": [
            {
                "service": text,
                "topic": text,
                "status": text,
                "lag": 1,
                "lag_seconds": 1.0,
                "time_to_data_loss_seconds": None,
            }
        ],
        "errors": [{"service": text, "errors": 1, "rate": 0.1}],
        "stuck": [
            {
                "trade_id": text,
                "stage": text,
                "service": text,
                "last_event_type": text,
                "last_event_time": text,
            }
        ],
        "alerts": {"firing": [_alert(text)], "pending": [], "omitted": {"x": 1}},
        "latency": {"e2e": {"p50": 1.0}},
    }
    alerts = {
        "firing": [_alert(text)],
        "pending": [],
        "recent": [_alert(text)],
        "omitted": {"firing": 0, "pending": 0, "recent": 3},
    }
    return [
        screens.trace_screen(trace),
        screens.status_screen(status),
        screens.alerts_screen(alerts),
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("out", [io.StringIO, _Terminal], ids=["piped", "terminal"])
def test_producer_text_cannot_drive_the_terminal(
    out: type[io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "2000")  # one line per row: the escapes are not wrapped
    for blocks in _screens(HOSTILE):
        stream = out()
        screens.render(blocks, stream)
        shown = stream.getvalue()
        assert ("│" in shown) == (out is _Terminal)
        for raw in RAW:
            assert raw not in shown
        assert "x\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eevil\\x0d\\x7f" in shown


def test_kafka_config_errors_name_the_key_never_the_value(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "kafka.properties"
    config.write_text("sasl.password=Hunter2-secret\nsecurity.protocol=S3cret-Value\n")
    env = {
        **user_env,
        "RTTM_KAFKA_CONFIG": str(config),
        "RTTM_KAFKA_BROKERS": f"127.0.0.1:{free_port()}",
    }
    line = one_line(rttm("topics", "list", env=env), "value of security.protocol")
    assert "S3cret" not in line
    assert "Hunter2" not in line
    extra = {"sasl.password": "Hunter2-secret", "no.such.key": "S3cret-Value"}
    with pytest.raises(ConfigError, match=r"no\.such\.key is not a librdkafka") as raised:
        Emitter(KafkaSettings(brokers="127.0.0.1:1", extra=extra))
    assert "S3cret" not in str(raised.value)


def test_prune_far_beyond_the_calendar_is_one_line(user_env: dict[str, str]) -> None:
    env = {**user_env, "RTTM_DATABASE_URL": "postgresql://u:S3cret@127.0.0.9:1/rttm"}
    line = one_line(rttm("db", "prune", "--keep-days", "99999999", env=env), "--keep-days")
    assert "S3cret" not in line
    assert "127.0.0.9" not in line
