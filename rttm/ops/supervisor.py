"""Run RTTM's processes as children, restart the ones that crash, stop them in order.

What ``rttm run`` does. Children come in groups: the processes of one Bytewax cluster
form a group, and a group is restarted as a whole (a cluster whose process dies ends its
other processes within a second, and a process started alone would wait, up to its peer
timeout, for peers that already ran). A group that ends without being asked to is
restarted after a delay that doubles from ``FIRST_DELAY_S`` to ``MAX_DELAY_S``, and falls
back once the group has run for ``STABLE_S``. Each line a child writes is passed on with
its name in front (or, with JSON logs, as a ``process`` field). On SIGTERM or SIGINT the
groups are stopped one after another, each with SIGTERM and up to ``stop_timeout`` seconds
to end cleanly, then SIGKILL.
Children are bound to the supervisor's life (:func:`bind_to_parent`): if it is killed,
they receive SIGTERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from rttm.core import logs, stopping
from rttm.ops import cluster

#: Set in each child's environment: the pid of the supervisor it belongs to.
ENV_SUPERVISOR = "RTTM_SUPERVISOR_PID"
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
#: A group that ran this long before ending restarts after the first delay again.
STABLE_S = 60.0
#: Seconds a group gets to end after SIGTERM: more than a flow's own limit.
STOP_TIMEOUT_S = stopping.GIVE_UP_S + 10.0
#: Seconds a child's output may take to arrive after the child ended.
DRAIN_S = 2.0
#: How long the survivors of a crashed cluster get to end before SIGKILL.
CRASH_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Child:
    """One process to run: its name in the log and its command line."""

    name: str
    argv: tuple[str, ...]


@dataclass
class Group:
    """Children started, restarted and stopped together (one flow's cluster, or one process)."""

    name: str
    children: tuple[Child, ...]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pumps: list[threading.Thread] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # of the last stop
    started_at: float = 0.0
    restarts: int = 0
    delay: float = field(default_factory=lambda: FIRST_DELAY_S)
    start_at: float = 0.0  # time.monotonic() of the next start


def bind_to_parent() -> None:
    """In a child of a supervisor: receive SIGTERM when the supervisor dies (Linux).

    Called by the ``rttm`` entry point when ``RTTM_SUPERVISOR_PID`` is set; elsewhere, and
    where ``prctl`` does not exist, it does nothing.
    """
    supervisor = os.environ.get(ENV_SUPERVISOR, "")
    if not supervisor.isdigit() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(supervisor):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def describe_exit(status: int) -> str:
    """``status 1`` or ``signal SIGKILL`` for a Popen return code."""
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


class Supervisor:
    """Runs ``groups`` until a signal; :meth:`run` returns the exit status."""

    def __init__(self, groups: Sequence[Group], stop_timeout: float = STOP_TIMEOUT_S) -> None:
        self._groups = list(groups)
        self._stop_timeout = stop_timeout
        self._json = logs.json_enabled()
        self._out_lock = threading.Lock()
        self._stop = threading.Event()
        self._signals: list[signal.Signals] = []

    # -- output --------------------------------------------------------------------------

    def say(self, message: str, level: str = "INFO") -> None:
        """A line of the supervisor's own."""
        text = logs.render(message, level)
        if text is not None:
            self._write(text)

    def _write(self, text: str) -> None:
        """One whole line; a closed or failing stderr never stops the supervising."""
        with self._out_lock, contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"{text}\n")
            sys.stderr.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        """Pass a child's lines on, each marked with the child's name."""
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            if not line.strip():
                continue
            self._write(self._mark(name, line))
        stream.close()

    def _mark(self, name: str, line: str) -> str:
        if not self._json:
            return f"{name} | {line}"
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):  # a traceback, a line of Bytewax's own
            return logs.json_line(line, "WARNING", "rttm.child", process=name)
        return json.dumps({**record, "process": name}, ensure_ascii=False)

    # -- signals -------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signal.Signals(signum))
        self._stop.set()
        if len(self._signals) > 1:  # a second signal: no more waiting
            for group in self._groups:
                self._kill(group, signal.SIGKILL)

    # -- children ------------------------------------------------------------------------

    def _start(self, group: Group) -> None:
        # A child's place in a cluster comes from its command line alone: one inherited
        # from the supervisor's environment would make every child a process of it.
        inherited = {k: v for k, v in os.environ.items() if k not in cluster.VARIABLES}
        env = {**inherited, ENV_SUPERVISOR: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        group.started_at = time.monotonic()
        for child in group.children:
            try:
                process = subprocess.Popen(  # noqa: S603 - our own command lines, no shell
                    child.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:  # too many open files, the program gone in an upgrade
                started = ", ".join(f"{n} pid {p.pid}" for n, p in group.running.items())
                also = f"; ending {started}" if started else ""
                self.say(f"cannot start {child.name}: {exc.strerror or exc}{also}", "ERROR")
                self._end(group, CRASH_GRACE_S)
                self._schedule(group)
                return
            group.running[child.name] = process
            output: IO[bytes] = process.stdout  # type: ignore[assignment]  # PIPE: never None
            pump = threading.Thread(
                target=self._pump,
                args=(child.name, output),
                name=f"rttm-run-{child.name}",
                daemon=True,
            )
            pump.start()
            group.pumps.append(pump)
        pids = ", ".join(f"{name} pid {p.pid}" for name, p in group.running.items())
        again = f" (restart {group.restarts})" if group.restarts else ""
        self.say(f"started {pids}{again}")

    def _kill(self, group: Group, sig: signal.Signals) -> None:
        for process in group.running.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    def _end(self, group: Group, timeout: float) -> bool:
        """SIGTERM the group, wait up to ``timeout``, then SIGKILL; True if all ended in time.

        Each child's last lines are passed on before this returns, and its exit status is
        kept in ``group.statuses``.
        """
        self._kill(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in group.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(deadline - time.monotonic(), 0))
        late = [name for name, p in group.running.items() if p.poll() is None]
        if late:
            self.say(f"{', '.join(late)} still running after {timeout:g} s: killed", "WARNING")
            self._kill(group, signal.SIGKILL)
            for process in group.running.values():
                process.wait()
        for pump in group.pumps:
            pump.join(DRAIN_S)
        group.statuses = {name: p.returncode for name, p in group.running.items()}
        group.running.clear()
        group.pumps.clear()
        return not late

    def _schedule(self, group: Group) -> None:
        """Start ``group`` again after its delay, and double the next one."""
        group.restarts += 1
        group.start_at = time.monotonic() + group.delay
        group.delay = min(group.delay * 2, MAX_DELAY_S)

    def _check(self, group: Group) -> None:
        """Notice a child that ended: end its group and schedule the restart."""
        ended = [(name, p.returncode) for name, p in group.running.items() if p.poll() is not None]
        if not ended:
            return
        ran = time.monotonic() - group.started_at
        if ran >= STABLE_S:
            group.delay = FIRST_DELAY_S
        what = ", ".join(f"{name} exited ({describe_exit(code)})" for name, code in ended)
        what += f" after {ran:.1f} s"
        rest = [name for name, p in group.running.items() if p.poll() is None]
        if rest:
            what += f"; ending the rest of its cluster ({', '.join(rest)})"
        self.say(
            f"{what}; restarting {group.name} in {group.delay:g} s (restart {group.restarts + 1})",
            "WARNING",
        )
        self._end(group, CRASH_GRACE_S)
        self._schedule(group)

    def run(self) -> int:
        """Start every group, keep them running until a signal, stop them in order."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        for group in reversed(self._groups):  # the last to stop is the first to start
            if not self._stop.is_set():
                self._start(group)
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for group in self._groups:
                if group.running:
                    self._check(group)
                elif now >= group.start_at and not self._stop.is_set():
                    self._start(group)
        received = self._signals[0].name
        self.say(f"stopping on {received}: {', '.join(g.name for g in self._groups)}, in order")
        clean = True
        for group in self._groups:
            if group.running:
                clean = self._end(group, self._stop_timeout) and clean
                # Clean: it exited 0, or the SIGTERM it was sent ended it (no handler).
                failed = {
                    n: code
                    for n, code in group.statuses.items()
                    if code not in (0, -signal.SIGTERM)
                }
                if failed:  # it stopped, but not as asked: its exit says why
                    clean = False
                    exits = ", ".join(f"{n} ({describe_exit(c)})" for n, c in failed.items())
                    self.say(f"{group.name} stopped; exited unclean: {exits}", "WARNING")
                else:
                    self.say(f"{group.name} stopped")
        if len(self._signals) > 1:
            clean = False  # the second signal killed whatever still ran
        self.say("every child stopped" + ("" if clean else "; not every one cleanly"))
        return 0 if clean else 1
