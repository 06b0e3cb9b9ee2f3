"""The ingestion's counters in this process: rows written, rejects, duplicates, retries.

With the source's counters (:mod:`rttm.core.stream.stats`: messages read, lag), read by the
progress line of ``rttm ingest`` and :mod:`rttm.ingest.prometheus`. Bytewax runs a thread
per worker, and ``+=`` on a shared integer is not atomic, so every update takes one lock:
Prometheus counters must not lose increments. The updates come once per batch, not per
message, so the lock costs nothing measurable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

_LOCK = threading.Lock()


@dataclass
class Counters:
    """Totals since the process started."""

    rows: int = 0
    rejects: int = 0
    duplicates: int = 0
    retries: int = 0  # sink batches retried after losing the database
    started: float = field(default_factory=time.monotonic)


COUNTERS = Counters()


def record_dropped_duplicates(count: int) -> None:
    """The dedupe step dropped ``count`` messages already seen."""
    with _LOCK:
        COUNTERS.duplicates += count


def record_retry() -> None:
    """The sink lost the database and will retry its batch."""
    with _LOCK:
        COUNTERS.retries += 1


def record_written(rows: int, rejects: int) -> None:
    """The sink committed ``rows`` rows and ``rejects`` rejects (conflicts included)."""
    with _LOCK:
        COUNTERS.rows += rows
        COUNTERS.rejects += rejects
