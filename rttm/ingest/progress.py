"""The live progress line of ``rttm ingest``: rows/s, rows, rejects, duplicates, lag."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from rttm.ingest.stats import COUNTERS, Counters

#: Seconds between refreshes on a terminal, and between lines when output is a file.
TTY_INTERVAL_S = 1.0
LOG_INTERVAL_S = 10.0


def describe(counters: Counters, rate: float) -> str:
    """One line of what the ingestion has done so far."""
    return (
        f"ingest: {rate:,.0f} rows/s | rows {counters.rows:,} | rejects {counters.rejects:,}"
        f" | duplicates dropped {counters.duplicates:,} | remaining lag {counters.remaining_lag:,}"
    )


class ProgressLine:
    """Refreshes :func:`describe` on ``stream`` from a daemon thread until stopped."""

    def __init__(self, stream: TextIO = sys.stderr, counters: Counters = COUNTERS) -> None:
        self._stream, self._counters = stream, counters
        self._tty = stream.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rttm-progress", daemon=True)
        self._last_rows, self._last_time = counters.rows, time.monotonic()

    def start(self) -> ProgressLine:
        """Begin refreshing; returns self."""
        self._thread.start()
        return self

    def _line(self) -> str:
        now, rows = time.monotonic(), self._counters.rows
        rate = (rows - self._last_rows) / max(now - self._last_time, 1e-9)
        self._last_rows, self._last_time = rows, now
        return describe(self._counters, rate)

    def _run(self) -> None:
        interval = TTY_INTERVAL_S if self._tty else LOG_INTERVAL_S
        while not self._stop.wait(interval):
            end = "\r" if self._tty else "\n"
            self._stream.write("\x1b[2K" + self._line() + end if self._tty else self._line() + end)
            self._stream.flush()

    def stop(self) -> str:
        """Stop refreshing; returns the final summary (average rate over the whole run)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        elapsed = time.monotonic() - self._counters.started
        summary = describe(self._counters, self._counters.rows / max(elapsed, 1e-9))
        return summary.replace("rows/s", f"rows/s on average over {elapsed:.1f} s", 1)
