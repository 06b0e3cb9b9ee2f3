"""Small process and socket helpers shared by the broker and PostgreSQL launchers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from rttm.core.addresses import LOCALHOST
from rttm.core.errors import RttmError
from rttm.core.safe_paths import open_private

#: How long a local server may take to answer after it was started.
START_TIMEOUT_S = 30.0
#: How long a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0
#: Index of ``starttime`` (field 22 of proc(5)'s /proc/PID/stat) after the ``(comm)`` field.
_STARTTIME = 19

# Servers we started in this process, kept referenced so that no Popen is garbage collected
# while its server runs (that would warn) and so that stopping one also reaps it.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn_server(command: list[str], log_path: Path, **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a long-running server in its own session, output appended to ``log_path``.

    The server outlives this process (``rttm up`` returns while it keeps running). The log
    is opened without following a symlink: planted in the state directory, one would make a
    server started as root append to any file.
    """
    with os.fdopen(open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as log:
        process: subprocess.Popen[bytes] = subprocess.Popen(  # noqa: S603 - argv list, no shell
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,  # type: ignore[call-overload]
        )
    _CHILDREN[process.pid] = process
    return process


def log_tail(log_path: Path, lines: int = 3) -> str:
    """The last ``lines`` lines of a server log, joined on one line for an error message."""
    try:
        with os.fdopen(open_private(log_path, os.O_RDONLY), "rb") as log:
            text = log.read().decode(errors="replace")
    except (OSError, RttmError):
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound (nothing listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
        return True


def port_answers(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc's ``starttime``), if it lives."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    value = fields[_STARTTIME] if len(fields) > _STARTTIME else ""
    return int(value) if value.isdigit() else None


def program_of(pid: int) -> str | None:
    """The first word of ``pid``'s command line (the program it runs), if it lives."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return None


def is_same_process(pid: int, started: int, program: str) -> bool:
    """Whether ``pid`` is still the process started at ``started`` running ``program``.

    A pid alone names whoever has it now: after a reboot, or in a forged ``stack.json``,
    another process. Its start time and program tell the server RTTM started apart.
    """
    return (
        started > 0 and start_time(pid) == started and program_of(pid) == program and pid_alive(pid)
    )


def terminate(
    pid: int, timeout: float = STOP_TIMEOUT_S, first_signal: signal.Signals = signal.SIGTERM
) -> None:
    """Send ``first_signal`` to ``pid``, wait for it to exit, SIGKILL it if it does not."""
    for sig in (first_signal, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (child := _CHILDREN.get(pid)) is not None and child.poll() is not None:
                del _CHILDREN[pid]
                return
            if not pid_alive(pid):  # a zombie: reap it if it is ours (else Popen warns at exit)
                if (child := _CHILDREN.pop(pid, None)) is not None:
                    child.wait()
                return
            time.sleep(0.05)
