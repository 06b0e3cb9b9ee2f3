"""What one shard saw in one window: counters, latency sketches and end-of-window gauges.

A shard fills a :class:`WindowAcc` per open window; when the window closes the shard sends
it on, and the merge step adds up the shards' accumulators of the same window (every field
is a sum, a sketch or a list of gauges owned by exactly one shard).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import MISSING, dataclass, field, fields
from typing import TypeVar

from rttm.metrics.sketch import Sketch

K = TypeVar("K", bound=Hashable)

#: Consumer status per queue partition (Burrow's names), ordered by severity.
OK, WARN, STALL, STOP = 0, 1, 2, 3
STATUS_NAMES = ("OK", "WARN", "STALL", "STOP")


@dataclass(frozen=True, slots=True)
class QueueGauge:
    """A queue partition's state at a window's end, from the snapshots up to then."""

    service: str
    topic: str
    partition: int
    lag: int
    #: How far behind the consumer is in time: lag / consume rate; without progress, how
    #: long its offset has not moved (a lower bound of the backlog's age).
    lag_seconds: float
    consume_rate: float | None  # messages/s over the recent snapshots; None: too few
    status: int  # OK, WARN, STALL or STOP


def window_start(moment: float, length: float) -> float:
    """Start of the window (aligned to the epoch) holding ``moment``."""
    return math.floor(moment / length) * length


#: A stretch of this many windows without data is skipped, not emitted window by window
#: (an outage of hours, or a stray old event, must not mean millions of empty windows).
MAX_EMPTY_WINDOWS = 360


def past_gap(
    start: float, held: Iterable[float], until: float, length: float, *, busy: bool
) -> float:
    """Where to go on from ``start``, a window that holds no data.

    The next window that does (or ``until``'s) when the stretch up to it is worth skipping:
    any stretch while nothing is expected (not ``busy``), else one of ``MAX_EMPTY_WINDOWS``
    windows or more. Otherwise ``start``: its windows are emitted one by one. Shared by the
    shards, which close windows, and the merge step, which finalizes them.
    """
    following = min((w for w in held if w > start), default=until)
    resume = window_start(min(following, until), length)
    return resume if resume - start >= length * (MAX_EMPTY_WINDOWS if busy else 1) else start


def _add(into: dict[K, int], other: dict[K, int]) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


@dataclass(slots=True)
class WindowAcc:
    """One window's partial results from one shard (or, merged, from all)."""

    events: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, event_type)
    started: int = 0
    completed: int = 0
    rejected: int = 0
    hops: dict[tuple[str, str], Sketch] = field(default_factory=dict)  # (from, to) stage, ms
    e2e: Sketch = field(default_factory=Sketch)  # ms
    dlq: dict[tuple[str, str], int] = field(default_factory=dict)  # (dlq topic, reason)
    errors: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, error_type)
    logs: dict[tuple[str, str, str], int] = field(default_factory=dict)  # service, level, cat.
    late: dict[str, int] = field(default_factory=dict)  # topic: past the horizon, not counted
    invalid: dict[str, int] = field(default_factory=dict)  # topic
    future: dict[str, int] = field(default_factory=dict)  # topic: dated beyond the clock
    queues: list[QueueGauge] = field(default_factory=list)
    stuck: dict[tuple[str, str], int] = field(default_factory=dict)  # (stage, service) now
    untracked_trades: int = 0  # trades let go for space (the engine's cap) in the window
    untracked_partitions: int = 0  # queue partitions let go for space in the window
    corrected: dict[str, int] = field(default_factory=dict)  # topic: late, applied to theirs
    repeated: dict[str, int] = field(default_factory=dict)  # topic: repeats of counted events

    def __setstate__(self, state: list[object]) -> None:
        """Restore a pickled accumulator; fields added since it was made get their defaults."""
        for name, default in _DEFAULTS.items():
            setattr(self, name, default())
        for name, value in zip(_DEFAULTS, state, strict=False):
            setattr(self, name, value)

    def __getstate__(self) -> list[object]:
        return [getattr(self, name) for name in _DEFAULTS]

    def merge(self, other: WindowAcc) -> None:
        """Add another shard's accumulator of the same window."""
        _add(self.events, other.events)
        self.started += other.started
        self.completed += other.completed
        self.rejected += other.rejected
        for hop, sketch in other.hops.items():
            if hop in self.hops:
                self.hops[hop].merge(sketch)
            else:
                self.hops[hop] = sketch
        self.e2e.merge(other.e2e)
        _add(self.dlq, other.dlq)
        _add(self.errors, other.errors)
        _add(self.logs, other.logs)
        _add(self.late, other.late)
        _add(self.invalid, other.invalid)
        _add(self.future, other.future)
        self.queues.extend(other.queues)
        _add(self.stuck, other.stuck)
        self.untracked_trades += other.untracked_trades
        self.untracked_partitions += other.untracked_partitions
        _add(self.corrected, other.corrected)
        _add(self.repeated, other.repeated)


def _constant(value: object) -> Callable[[], object]:
    """A maker of ``value`` (a field's plain default)."""
    return lambda: value


#: Each field of :class:`WindowAcc` in order, with a maker of its default.
_DEFAULTS: dict[str, Callable[[], object]] = {
    f.name: (f.default_factory if f.default_factory is not MISSING else _constant(f.default))
    for f in fields(WindowAcc)
}
