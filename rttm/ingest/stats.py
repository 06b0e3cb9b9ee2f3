"""Process-local ingestion counters, read by the live progress line of ``rttm ingest``.

Plain dictionaries updated from the Bytewax worker threads: a progress display tolerates
the rare lost increment, and a lock on the hot path would cost more than it is worth.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Totals since the process started."""

    read: int = 0
    rows: int = 0
    rejects: int = 0
    duplicates: int = 0
    retries: int = 0  # sink batches retried after losing the database
    lag: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    began: bool = False  # the flow started: its source listed its partitions
    polled: dict[int, float] = field(default_factory=dict)  # worker thread: last poll
    read_at: float | None = None  # ... and of its last message

    @property
    def remaining_lag(self) -> int:
        """Messages behind the end of the partitions read so far."""
        return sum(self.lag.values())


COUNTERS = Counters()


def record_read(where: str, count: int, lag: int) -> None:
    """A source partition read ``count`` messages and is ``lag`` behind its end."""
    COUNTERS.read += count
    COUNTERS.lag[where] = lag
    COUNTERS.read_at = time.monotonic()


def record_began() -> None:
    """The flow started here (in a cluster: once every peer was connected)."""
    COUNTERS.began = True


def record_poll() -> None:
    """This worker's source asked the broker for messages (the readiness probe's heartbeat)."""
    COUNTERS.polled[threading.get_ident()] = time.monotonic()


def record_dropped_duplicates(count: int) -> None:
    """The dedupe step dropped ``count`` messages already seen."""
    COUNTERS.duplicates += count


def record_retry() -> None:
    """The sink lost the database and will retry its batch."""
    COUNTERS.retries += 1


def record_written(rows: int, rejects: int) -> None:
    """The sink committed ``rows`` rows and ``rejects`` rejects (conflicts included)."""
    COUNTERS.rows += rows
    COUNTERS.rejects += rejects
