"""Stop a long-running RTTM process cleanly on SIGINT or SIGTERM.

The first signal asks the process to stop: a flow's sources end their partitions as a
bounded run does at its end, so every batch already read is written and committed, the
consumer-group offsets are flushed and Bytewax ends the flow normally (with a last snapshot
under a recovery store). A second signal, or a stop that cannot finish (the database is
away, or takes longer than ``GIVE_UP_S``), ends the process at once: nothing is acknowledged
before it is stored, so the next start re-reads whatever was in flight.

Only a process's entry point calls :func:`install`; library code asks :func:`requested`.
Without ``install`` (a flow run inside a test), nothing here exits the process. A process
that bounds its own stop (the dashboard, the demo waiting for its children) installs
without the watchdog: a second signal is then only noted.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import NoReturn

from rttm.core import logs
from rttm.core.errors import RttmError

_LOG = logging.getLogger(__name__)
#: How long a stop may take before the process says what it is waiting for.
NOTICE_S = 3.0
#: How long a stop may take before the process gives up waiting and exits at once: a
#: cluster whose other processes keep running, a sink blocked on a lost server.
GIVE_UP_S = 30.0
#: Exit status of a failure the operator can act on (as the ``rttm`` command).
EXIT_ERROR = 1
_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested = threading.Event()
_received: signal.Signals | None = None
_installed = False
_watched = False


def install(*, watchdog: bool = True) -> None:
    """Handle SIGINT and SIGTERM in this process (its entry point calls this once).

    With ``watchdog``, a second signal or a stop longer than ``GIVE_UP_S`` exits at once.
    """
    global _installed, _watched
    for sig in _SIGNALS:
        signal.signal(sig, _on_signal)
    _installed = True
    if watchdog and not _watched:
        # Started here, not in the handler: a signal handler should only set a flag.
        threading.Thread(target=_watchdog, name="rttm-stop-watchdog", daemon=True).start()
        _watched = True


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    global _received
    received = signal.Signals(signum)
    if _requested.is_set():
        if _watched:
            exit_now(f"stopped at once on a second {received.name}", 128 + signum)
        return  # the process bounds its own stop; the first signal is the one reported
    _received = received
    _requested.set()


def _watchdog() -> None:
    """Say what a slow stop waits for; give up when it takes far too long."""
    _requested.wait()
    time.sleep(NOTICE_S)
    _LOG.warning(
        "still stopping: waiting for the batches in flight to be committed "
        "(a second Ctrl-C stops at once; they are then re-read at the next start)"
    )
    time.sleep(GIVE_UP_S - NOTICE_S)
    exit_now(f"gave up waiting after {GIVE_UP_S:.0f} s", _forced_status())


def requested() -> bool:
    """Whether a stop was asked for (cheap: called once per source poll)."""
    return _requested.is_set()


def wait(seconds: float) -> bool:
    """Sleep up to ``seconds``; returns early, True, when a stop is asked for."""
    return _requested.wait(seconds)


def received() -> signal.Signals | None:
    """The signal that asked for the stop, if any."""
    return _received


def request(sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask for a stop as ``sig`` would (a supervisor in the same process, tests)."""
    global _received
    _received = _received or sig
    _requested.set()


def status(*, finished: bool = False) -> int:
    """Exit status: 0, or 128 + the signal when a run that should end by itself was cut short.

    A following flow or a server ends only when asked to, so a stop is its success (as
    systemd and Kubernetes expect); a bounded run (``--until-caught-up``) stopped before
    its end did not do its job, and says so with the shell's convention (130, 143).
    """
    if _received is None or finished:
        return 0
    return 128 + _received


def _forced_status() -> int:
    return 128 + (_received or signal.SIGTERM)


def exit_now(reason: str, code: int) -> NoReturn:
    """End the process at once with one line: nothing in flight was acknowledged.

    Written with ``os.write``: this may run in a signal handler that interrupted a write
    to ``sys.stderr``, which a buffered write would refuse as reentrant.
    """
    line = f"rttm: {reason}: batches in flight were not committed; the next start re-reads them"
    os.write(sys.stderr.fileno(), (f"{logs.render(line, 'ERROR')}\n").encode())
    os._exit(code)


def abandon(reason: str) -> None:
    """A stop was asked for while ``reason`` keeps a batch from being written: exit now.

    Only in a process that called :func:`install`; elsewhere (a test running a flow) this
    returns and the caller goes on retrying.
    """
    if _installed and _requested.is_set():
        exit_now(f"stopped while {reason}", _forced_status())


def fail(message: str) -> NoReturn:
    """A fault no retry can mend: one line and exit 1, or :class:`RttmError` without install.

    Raising inside a Bytewax worker would print a Rust panic and a traceback around the one
    line that matters, and exiting is safe: nothing unwritten was acknowledged.
    """
    if _installed:
        logs.write(f"rttm: error: {message}", "ERROR")
        os._exit(EXIT_ERROR)
    raise RttmError(message)
