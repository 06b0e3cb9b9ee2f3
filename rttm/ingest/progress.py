"""The live progress line of ``rttm ingest``: rows/s, rows, rejects, duplicates, lag."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rttm.ingest.stats import COUNTERS, Counters
from rttm.live_line import LiveLine


def describe(counters: Counters, rate: float) -> str:
    """One line of what the ingestion has done so far."""
    return (
        f"ingest: {rate:,.0f} rows/s | rows {counters.rows:,} | rejects {counters.rejects:,}"
        f" | duplicates dropped {counters.duplicates:,} | remaining lag {counters.remaining_lag:,}"
    )


class ProgressLine:
    """:func:`describe` with the rate since the previous refresh, live on ``stream``."""

    def __init__(self, stream: TextIO = sys.stderr, counters: Counters = COUNTERS) -> None:
        self._counters = counters
        self._last_rows, self._last_time = counters.rows, time.monotonic()
        self._line = LiveLine(self._render, stream)

    def start(self) -> ProgressLine:
        """Begin refreshing; returns self."""
        self._line.start()
        return self

    def _render(self) -> str:
        now, rows = time.monotonic(), self._counters.rows
        rate = (rows - self._last_rows) / max(now - self._last_time, 1e-9)
        self._last_rows, self._last_time = rows, now
        return describe(self._counters, rate)

    def stop(self) -> str:
        """Stop refreshing; returns the final summary (average rate over the whole run)."""
        self._line.stop()
        elapsed = time.monotonic() - self._counters.started
        summary = describe(self._counters, self._counters.rows / max(elapsed, 1e-9))
        return summary.replace("rows/s", f"rows/s on average over {elapsed:.1f} s", 1)
