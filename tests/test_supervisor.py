"""The supervisor behind ``rttm run``, with small Python children instead of RTTM's own.

Each test runs a supervisor in a process of its own (it installs signal handlers and is
the parent of its children, as under ``rttm run``) and reads its output as it comes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rttm.ops import supervisor
from tests.ingest_helpers import REPO

DRIVER = """
import json, sys
from rttm.ops import supervisor
from rttm.ops.supervisor import Child, Group, Supervisor
spec = json.loads(sys.argv[1])
for name, value in spec["constants"].items():  # shorter waits than a deployment's
    setattr(supervisor, name, value)
def argv(code):  # a path stands for a program that cannot be started
    return (code,) if code.startswith("/") else (sys.executable, "-c", code)
groups = [Group(name, tuple(Child(child, argv(code)) for child, code in children))
          for name, children in spec["groups"]]
sys.exit(Supervisor(groups, spec["stop_timeout"]).run())
"""
SLEEP = "import time; print('up', flush=True); time.sleep(600)"
CRASH = "import sys, time; time.sleep(0.2); sys.exit(3)"
IGNORE_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(600)"
)
SLOW_STOP = """
import signal, sys, time
def stop(*_):
    print("asked to stop", flush=True)
    time.sleep(0.5)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("up", flush=True)
time.sleep(600)
"""


_RUNNING: list[Running] = []


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """After each test, even a failed one: kill what its supervisors and children left."""
    yield
    while _RUNNING:
        run = _RUNNING.pop()
        for pid in [run.process.pid, *run.pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.end()


class Running:
    """A supervisor process and the lines it wrote so far."""

    def __init__(
        self,
        groups: list[tuple[str, list[tuple[str, str]]]],
        stop_timeout: float = 5,
        env: dict[str, str] | None = None,
        constants: dict[str, float] | None = None,
    ) -> None:
        spec = json.dumps(
            {"groups": groups, "stop_timeout": stop_timeout, "constants": constants or {}}
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, spec],
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        _RUNNING.append(self)
        self.lines: list[str] = []
        self.times: list[float] = []  # time.monotonic() each line arrived
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.times.append(time.monotonic())
            self.lines.append(line.rstrip("\n"))

    def when(self, prefix: str) -> list[float]:
        """When each line starting with ``prefix`` arrived."""
        return [
            t for t, line in zip(self.times, self.lines, strict=False) if line.startswith(prefix)
        ]

    def wait_for(self, text: str, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while sum(text in line for line in list(self.lines)) < count:
            assert time.monotonic() < deadline, f"no {text!r} in {self.lines}"
            time.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def end(self, timeout: float = 30) -> int:
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return status

    def pids(self) -> list[int]:
        """Every child ever started, from the supervisor's ``started`` lines."""
        started = (line for line in self.lines if line.startswith("started "))
        return [int(pid) for line in started for pid in re.findall(r" pid (\d+)", line)]


def gone(pid: int, within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_child_that_ends_is_restarted_with_its_cluster_after_a_doubling_delay() -> None:
    run = Running([("flow", [("a", CRASH), ("b", SLEEP)])], env={"RTTM_LOG_FORMAT": "json"})
    run.wait_for("(restart 2)", count=2)  # its report and its start
    run.signal(signal.SIGTERM)
    assert run.end() == 0
    own = [r for r in map(json.loads, run.lines) if "process" not in r]
    reports = [r["message"] for r in own if "restarting" in r["message"]]
    assert [line.split(" after ")[0] for line in reports] == ["a exited (status 3)"] * 2
    assert [line.split(" s; ", 1)[1] for line in reports] == [
        "ending the rest of its cluster (b); restarting flow in 1 s (restart 1)",
        "ending the rest of its cluster (b); restarting flow in 2 s (restart 2)",
    ]
    assert all(r["level"] == "WARNING" for r in own if "restarting" in r["message"])

    def at(record: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(record["time"].replace("Z", "+00:00"))

    starts = [at(r) for r in own if r["message"].startswith("started a pid ")]
    crashes = [at(r) for r in own if "restarting" in r["message"]]
    assert len(starts) == 3
    # Each restart waits its delay (the supervisor's own clock, to the millisecond).
    assert (starts[1] - crashes[0]).total_seconds() >= 0.99
    assert (starts[2] - crashes[1]).total_seconds() >= 1.99
    assert ("up", "b") in [(r["message"], r.get("process")) for r in map(json.loads, run.lines)]
    assert all(gone(pid) for pid in run.pids())


def test_sigterm_stops_the_groups_in_order_and_kills_one_that_does_not_stop() -> None:
    run = Running([("first", [("f", SLOW_STOP)]), ("second", [("s", IGNORE_TERM)])], stop_timeout=1)
    run.wait_for("f | up")
    run.wait_for("s | up")
    run.signal(signal.SIGTERM)
    assert run.end() == 1
    tail = run.lines[run.lines.index("stopping on SIGTERM: first, second, in order") :]
    assert tail == [
        "stopping on SIGTERM: first, second, in order",
        "f | asked to stop",
        "first stopped",
        "s still running after 1 s: killed",
        "second stopped; exited unclean: s (signal SIGKILL)",
        "every child stopped; not every one cleanly",
    ]
    assert all(gone(pid) for pid in run.pids())
    started = [line for line in run.lines if line.startswith("started ")]
    assert [line.split(" pid ")[0] for line in started] == ["started s", "started f"]


def test_a_second_signal_kills_every_child_at_once() -> None:
    run = Running([("stubborn", [("s", IGNORE_TERM)])], stop_timeout=60)
    run.wait_for("s | up")
    run.signal(signal.SIGTERM)
    run.wait_for("stopping on SIGTERM")
    began = time.monotonic()
    run.signal(signal.SIGINT)
    assert run.end() == 1
    assert time.monotonic() - began < 5
    assert run.lines[-1] == "every child stopped; not every one cleanly"
    assert all(gone(pid) for pid in run.pids())


def test_children_outlive_no_supervisor_even_one_killed_with_sigkill() -> None:
    bound = "from rttm.ops.supervisor import bind_to_parent; bind_to_parent(); " + SLEEP
    run = Running([("bound", [("c", bound)])])
    run.wait_for("c | up")
    [child] = run.pids()
    run.process.send_signal(signal.SIGKILL)
    run.end()
    assert gone(child)


def test_with_json_logs_every_line_is_an_object_and_a_child_s_carry_its_name() -> None:
    chatty = (
        "import json, time; print(json.dumps({'level': 'INFO', 'message': 'mine'}));"
        "print('   '); print('plain text', flush=True); time.sleep(600)"
    )
    run = Running([("chat", [("c", chatty)])], env={"RTTM_LOG_FORMAT": "json"})
    run.wait_for("plain text")
    run.signal(signal.SIGTERM)
    assert run.end() == 0
    records = [json.loads(line) for line in run.lines]
    from_child = [(r.get("logger"), r["message"], r["process"]) for r in records if "process" in r]
    assert from_child == [(None, "mine", "c"), ("rttm.child", "plain text", "c")]
    assert [r["level"] for r in records if r.get("logger") == "rttm.child"] == ["WARNING"]
    assert records[-1]["message"] == "every child stopped"


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (0, "status 0"),
        (3, "status 3"),
        (-9, "signal SIGKILL"),
        (-15, "signal SIGTERM"),
        (-99, "signal 99"),
    ],
)
def test_an_exit_is_described_as_a_status_or_a_signal(status: int, said: str) -> None:
    assert supervisor.describe_exit(status) == said


def test_a_child_s_line_is_marked_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    text = supervisor.Supervisor([])
    assert text._mark("ingest-0", "ingest: 3 rows/s") == "ingest-0 | ingest: 3 rows/s"
    monkeypatch.setenv("RTTM_LOG_FORMAT", "json")
    as_json = supervisor.Supervisor([])
    marked: dict[str, Any] = json.loads(as_json._mark("x", '{"message": "m", "level": "WARNING"}'))
    assert marked == {"message": "m", "level": "WARNING", "process": "x"}
    wrapped = json.loads(as_json._mark("x", "[1, 2]"))  # JSON, but not an object
    assert (wrapped["logger"], wrapped["message"], wrapped["process"]) == (
        "rttm.child",
        "[1, 2]",
        "x",
    )


def test_a_group_that_ran_long_enough_restarts_after_the_first_delay_again() -> None:
    run = Running([("flow", [("a", CRASH)])], constants={"STABLE_S": 0.1})
    run.wait_for("(restart 3)", count=2)
    run.signal(signal.SIGTERM)
    assert run.end() == 0
    delays = [line.split(" in ")[1] for line in run.lines if "restarting" in line]
    assert delays[:3] == ["1 s (restart 1)", "1 s (restart 2)", "1 s (restart 3)"]


def test_a_survivor_that_ignores_sigterm_is_killed_after_the_grace_and_reaped() -> None:
    run = Running([("flow", [("a", CRASH), ("s", IGNORE_TERM)])], constants={"CRASH_GRACE_S": 0.5})
    run.wait_for("(restart 1)", count=2)
    first = run.pids()[1]
    assert "s still running after 0.5 s: killed" in run.lines
    assert gone(first, within=0.5)  # reaped by the supervisor, which is still running
    assert run.process.poll() is None
    run.signal(signal.SIGINT)
    run.signal(signal.SIGINT)
    run.end()


def test_no_cluster_setting_of_the_supervisor_reaches_a_child() -> None:
    show = (
        "import os, time; print('sees', os.environ.get('BYTEWAX_ADDRESSES'), "
        "os.environ.get('RTTM_DATABASE_URL'), flush=True); time.sleep(600)"
    )
    env = {"BYTEWAX_ADDRESSES": "h:1;h:2", "BYTEWAX_PROCESS_ID": "1", "RTTM_DATABASE_URL": "x"}
    run = Running([("one", [("c", show)])], env=env)
    run.wait_for("c | sees")
    run.signal(signal.SIGTERM)
    assert run.end() == 0
    assert "c | sees None x" in run.lines


def test_a_signal_during_a_restart_delay_starts_nothing_more_and_stops_cleanly() -> None:
    run = Running([("flow", [("a", CRASH)])], constants={"FIRST_DELAY_S": 30})
    run.wait_for("restarting flow in 30 s (restart 1)")
    run.signal(signal.SIGTERM)
    assert run.end() == 0
    assert sum(line.startswith("started ") for line in run.lines) == 1
    assert run.lines[-1] == "every child stopped"


def test_a_child_that_exits_unclean_when_stopped_makes_the_exit_status_1() -> None:
    unclean = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(3)); "
        "print('up', flush=True); time.sleep(600)"
    )
    run = Running([("flow", [("u", unclean)])])
    run.wait_for("u | up")
    run.signal(signal.SIGTERM)
    assert run.end() == 1
    assert run.lines[-2:] == [
        "flow stopped; exited unclean: u (status 3)",
        "every child stopped; not every one cleanly",
    ]


def test_a_child_that_cannot_be_started_is_reported_and_tried_again() -> None:
    run = Running([("flow", [("ok", SLEEP), ("gone", "/nonexistent/rttm")])])
    run.wait_for("cannot start gone", count=2)
    run.signal(signal.SIGTERM)
    assert run.end() == 0
    failures = [line for line in run.lines if line.startswith("cannot start gone: ")]
    # Each time, the child that did start is ended with its group, which is tried again.
    assert len(failures) >= 2
    assert all(
        re.fullmatch(r"cannot start gone: No such file or directory; ending ok pid \d+", line)
        for line in failures
    )
    ended = [int(pid) for line in failures for pid in re.findall(r" pid (\d+)", line)]
    assert len(set(ended)) == len(ended)
    assert all(gone(pid) for pid in ended)
