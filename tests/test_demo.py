"""``rttm demo``: one command brings everything up, shows live data, and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rttm.cli.demo_commands import DEMO_SERVICE
from rttm.stack import pgdata
from rttm.stack.processes import free_port
from tests.ingest_helpers import REPO

pytestmark = pytest.mark.integration


def processes_with(variable: bytes) -> list[int]:
    """Pids whose environment holds ``variable`` (every process the demo started does)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if variable in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def assert_metrics_verify(env: dict[str, str]) -> None:
    """``rttm metrics verify`` on the demo's stack: windows settle, and none differs."""
    demo = {**env, "RTTM_STATE_DIR": str(Path(env["RTTM_STATE_DIR"]) / "demo")}
    stack = subprocess.run(
        [sys.executable, "-m", "rttm", "env"],
        env=demo,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in stack.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        demo[name] = shlex.split(value)[0]
    deadline = time.monotonic() + 90
    while True:
        verify = subprocess.run(
            [sys.executable, "-m", "rttm", "metrics", "verify", "--json"],
            env=demo,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert verify.returncode in (0, 1), verify.stderr
        report = json.loads(verify.stdout)
        if report["points_compared"] > 100 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert report["points_compared"] > 100, report  # the demo's windows settled, were checked
    assert verify.returncode == 0, verify.stdout


def silent(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The status' entries of the demo's consumer that does not report its own lag."""
    return [c for c in status["consumers"] if c["service"] == DEMO_SERVICE]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_runs_everything_and_stops_cleanly_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTTM_")}
    env["RTTM_STATE_DIR"] = str(tmp_path / "state")
    # Servers named in the environment are never the demo's: its fake faults stay local.
    env["RTTM_KAFKA_BROKERS"] = f"127.0.0.1:{free_port()}"
    env["RTTM_DATABASE_URL"] = f"postgresql://nobody@127.0.0.1:{free_port()}/prod"
    # Nor are its receivers: the demo's injected faults must page nobody.
    hook = f"RTTM_ALERT_WEBHOOK_URL=http://127.0.0.1:{free_port()}/oncall"
    env["RTTM_ALERT_WEBHOOK_URL"] = hook.partition("=")[2]
    env["RTTM_METRICS_CORRECTION"] = "10s"  # windows settle soon enough to verify them
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "rttm", "demo", "--port", str(port), "--rate", "40"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert demo.stdout is not None
        line = demo.stdout.readline()
        assert line == f"RTTM demo running: open http://127.0.0.1:{port}/\n"
        # Then, as `rttm up` prints them, the exports that point the CLI at the demo's stack.
        exports = dict(
            demo.stdout.readline().removeprefix("export ").strip().partition("=")[::2]
            for _ in range(2)
        )
        assert sorted(exports) == ["RTTM_DATABASE_URL", "RTTM_KAFKA_BROKERS"]
        assert exports["RTTM_KAFKA_BROKERS"].startswith("127.0.0.1:")
        assert exports["RTTM_KAFKA_BROKERS"] != env["RTTM_KAFKA_BROKERS"]
        assert "@127.0.0.1:" in shlex.split(exports["RTTM_DATABASE_URL"])[0]
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status") as answer:
                status = json.load(answer)
            if status["as_of"] is not None and status["trades"]["started"] and silent(status):
                break
            time.sleep(1)
        assert status["as_of"] is not None, "no metrics reached the dashboard within 60 s"
        # A consumer that reports nothing itself, on the dashboard through the lag exporter.
        assert silent(status), status["consumers"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as page:
            assert b"<html" in page.read().lower()
        assert processes_with(hook.encode()) == [demo.pid]  # none of its children has it
        links = processes_with(f"RTTM_DASHBOARD_URL=http://127.0.0.1:{port}".encode())
        assert len(links) == 6  # every child: simulator, orders, exporter, flows, dashboard
        if sig == signal.SIGINT:  # once is enough: the metrics agree with the tables
            assert_metrics_verify(env)
    finally:
        os.killpg(demo.pid, sig)  # as a terminal's Ctrl-C, or a supervisor
        _, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    assert err.strip().splitlines()[-1] == (
        f"demo stopped on {sig.name}: every process stopped cleanly; its stack is down and its"
        " data deleted"
    )
    assert "Traceback" not in err
    home = Path(env["RTTM_STATE_DIR"]) / "demo"  # every process the demo starts has it
    assert processes_with(f"RTTM_STATE_DIR={home}".encode()) == []
    assert not (tmp_path / "state" / "demo").exists()  # its stack and data are gone
    assert not pgdata.data_dir(home, os.geteuid() == 0).exists()  # as root: under /var/lib
    logs = tmp_path / "state" / "demo-logs"
    # The demo stops its children as Ctrl-C would, whatever stopped it.
    for name, last in (("ingest", "ingest: "), ("metrics", "metrics: "), ("dashboard", "dash")):
        lines = (logs / f"{name}.log").read_text().strip().splitlines()
        assert lines[-1].startswith(last), lines[-3:]
        assert lines[-1].endswith("stopped on SIGINT") or "| stopped on SIGINT;" in lines[-1]
