"""The live line of ``rttm metrics``: events/s, windows closed, stuck trades, alerts, watermark."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import partial
from typing import TextIO

from rttm.core.live_line import RateLine
from rttm.metrics.stats import COUNTERS, Counters


def describe(counters: Counters, rate: float) -> str:
    """One line of what the metrics flow has done so far."""
    mark = counters.watermark
    watermark = "-" if mark is None else f"{datetime.fromtimestamp(mark, UTC):%Y-%m-%dT%H:%M:%SZ}"
    late = ""
    if counters.corrected or counters.late or counters.repeated:  # only once there are any
        late = (
            f" | late: corrected {counters.corrected:,}, too late {counters.late:,}"
            f" | repeats {counters.repeated:,}"
        )
    return (
        f"metrics: {rate:,.0f} events/s | events {counters.events:,}"
        f" | windows closed {counters.windows:,}{late} | stuck trades {counters.stuck_open:,}"
        f" | alerts firing {counters.alerts_firing:,} | watermark {watermark}"
    )


class MetricsLine(RateLine):
    """:func:`describe` with the rate since the previous refresh, live on ``stream``."""

    def __init__(self, stream: TextIO = sys.stderr, counters: Counters = COUNTERS) -> None:
        super().__init__(
            partial(describe, counters), lambda: counters.events, counters.started, stream
        )
