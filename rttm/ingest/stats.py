"""Process-local ingestion counters, for the live line, readiness and Prometheus.

Read by the progress line of ``rttm ingest``, its readiness probe and
:mod:`rttm.ingest.prometheus`.

Bytewax runs a thread per worker, and ``+=`` on a shared integer is not atomic, so every
update takes one lock: Prometheus counters must not lose increments. The updates come once
per batch of messages, not per message, so the lock costs nothing measurable.
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
    lag: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition)
    started: float = field(default_factory=time.monotonic)
    began: bool = False  # the flow started: its source listed its partitions
    polled: dict[int, float] = field(default_factory=dict)  # worker thread: last poll
    read_at: float | None = None  # ... and of its last message

    @property
    def remaining_lag(self) -> int:
        """Messages behind the end of the partitions read so far."""
        with _LOCK:
            return sum(self.lag.values())

    def lag_by_partition(self) -> list[tuple[str, int, int]]:
        """``(topic, partition, lag)`` of every partition read so far, in order."""
        with _LOCK:
            return sorted((topic, partition, lag) for (topic, partition), lag in self.lag.items())


COUNTERS = Counters()
_LOCK = threading.Lock()


def record_read(topic: str, partition: int, count: int, lag: int) -> None:
    """A source partition read ``count`` messages and is ``lag`` behind its end."""
    with _LOCK:
        COUNTERS.read += count
        COUNTERS.lag[topic, partition] = lag
        COUNTERS.read_at = time.monotonic()


def record_began() -> None:
    """The flow started here (in a cluster: once every peer was connected)."""
    COUNTERS.began = True


def record_poll() -> None:
    """This worker's source asked the broker for messages (the readiness probe's heartbeat)."""
    COUNTERS.polled[threading.get_ident()] = time.monotonic()


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
