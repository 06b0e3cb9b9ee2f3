"""CPU seconds of a process tree and peak memory of a process, from ``/proc`` (Linux).

A server's CPU is its own plus that of its children, live (``utime + stime``) or already
reaped (``cutime + cstime``): for PostgreSQL, the postmaster, every backend that served
a connection and the background writers; for the broker, its one process.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _times(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / _TICK


def _children(pid: int) -> list[int]:
    """Live children of ``pid``; none if it exits meanwhile (backends come and go)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and all its descendants, reaped or not."""
    return _times(pid) + sum(tree_seconds(child) for child in _children(pid))


def peak_rss_mb(pid: int) -> float | None:
    """``VmHWM`` of a running process: its peak RSS since exec (not its parent's pages)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
