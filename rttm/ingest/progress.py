"""The live progress line of ``rttm ingest``, and the line a stopped ingestion ends with."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import TextIO

import psycopg

from rttm.core.db.connect import error_cause
from rttm.core.errors import RttmError
from rttm.core.live_line import RateLine
from rttm.core.stream import stats as source_stats
from rttm.core.stream.stats import SourceCounters
from rttm.ingest.resume import stored_positions
from rttm.ingest.stats import COUNTERS, Counters


def describe(counters: Counters, source: SourceCounters, rate: float) -> str:
    """One line of what the ingestion has done so far."""
    return (
        f"ingest: {rate:,.0f} rows/s | read {source.read:,} | rows {counters.rows:,}"
        f" | rejects {counters.rejects:,}"
        f" | duplicates dropped {counters.duplicates:,} | remaining lag {source.remaining_lag:,}"
    )


class ProgressLine(RateLine):
    """:func:`describe` with the rate since the previous refresh, live on ``stream``."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        counters: Counters = COUNTERS,
        source: SourceCounters = source_stats.COUNTERS,
    ) -> None:
        super().__init__(
            partial(describe, counters, source), lambda: counters.rows, counters.started, stream
        )


def stopped(summary: str, received: signal.Signals, url: str, topics: Sequence[str]) -> str:
    """``summary`` of a stopped run, with where each topic resumes (from the database)."""
    try:
        positions = stored_positions(url, topics)
    except (RttmError, psycopg.Error) as exc:
        return f"{summary} | stopped on {received.name}; positions unknown: {error_cause(exc)}"
    where = ", ".join(f"{topic} {positions.get(topic, 0):,}" for topic in topics)
    return f"{summary} | stopped on {received.name}; stored up to {where} (offsets summed)"
