"""The source's counters in this process: what both flows read, their lag, their polls.

Read by each flow's live line, the readiness probe (:func:`rttm.ops.health.flow_progress`), the
cluster start-up watch and the ingestion's Prometheus port. Bytewax runs a thread per
worker, and ``+=`` on a shared integer is not atomic, so every update takes one lock (once
per batch of messages, not per message: it costs nothing measurable).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

_LOCK = threading.Lock()


@dataclass
class SourceCounters:
    """Since the process started."""

    read: int = 0
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


COUNTERS = SourceCounters()


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
