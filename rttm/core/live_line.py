"""A status line refreshed in place on a terminal, or printed now and then into a log."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from rttm.core import logs

#: Seconds between refreshes on a terminal, and between lines when output is a file.
TTY_INTERVAL_S = 0.5
LOG_INTERVAL_S = 10.0


class LiveLine:
    """Writes ``render()`` to ``stream`` from a daemon thread until :meth:`stop`."""

    def __init__(self, render: Callable[[], str], stream: TextIO = sys.stderr) -> None:
        self._render, self._stream = render, stream
        self._tty = stream.isatty() and not logs.json_enabled()  # JSON: whole lines
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rttm-live-line", daemon=True)

    def start(self) -> LiveLine:
        """Begin refreshing; returns self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = TTY_INTERVAL_S if self._tty else LOG_INTERVAL_S
        while not self._stop.wait(interval):
            line = self._render()
            if self._tty:
                self._stream.write(f"\x1b[2K{line}\r")
            elif (text := logs.render(line)) is not None:
                self._stream.write(f"{text}\n")
            self._stream.flush()

    def stop(self) -> None:
        """Stop refreshing and clear the line on a terminal."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._tty:  # back to the first column too: a Ctrl-C may have echoed "^C" there
            self._stream.write("\x1b[2K\r")
            self._stream.flush()


class RateLine:
    """A :class:`LiveLine` of ``describe(rate)``, the rate of ``total()`` between refreshes.

    Args:
        describe: the line for a rate (per second); its first ``/s`` is the rate's unit.
        total: the running count the rate is taken of.
        started: ``time.monotonic()`` when counting began (for the average at the end).
        stream: where the line goes.
    """

    def __init__(
        self,
        describe: Callable[[float], str],
        total: Callable[[], int],
        started: float,
        stream: TextIO = sys.stderr,
    ) -> None:
        self._describe, self._total, self._started = describe, total, started
        self._last_count, self._last_time = total(), time.monotonic()
        self._line = LiveLine(self._render, stream)

    def start(self) -> RateLine:
        """Begin refreshing; returns self."""
        self._line.start()
        return self

    def _render(self) -> str:
        now, count = time.monotonic(), self._total()
        rate = (count - self._last_count) / max(now - self._last_time, 1e-9)
        self._last_count, self._last_time = count, now
        return self._describe(rate)

    def stop(self) -> str:
        """Stop refreshing; returns the final summary (average rate over the whole run)."""
        self._line.stop()
        elapsed = time.monotonic() - self._started
        summary = self._describe(self._total() / max(elapsed, 1e-9))
        return summary.replace("/s", f"/s on average over {elapsed:.1f} s", 1)
