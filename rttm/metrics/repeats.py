"""Repeated deliveries dropped the way the tables drop them: by the producer's ``event_id``.

The ingestion stores each event once (its dedupe key is unique per table), while Kafka may
deliver it twice: a producer retry, a service that resends. Counting deliveries would put
the metrics above the tables, so each shard remembers the ids of the events it counted,
as 64-bit keys grouped by the event's window, for as long as that window can still be
corrected (``RTTM_METRICS_CORRECTION``): a repeat within that time is dropped. Trade events
are keyed by id *and* event time, as their table is; the others by id, looked up in the
event's window (a repeat that changed its event time is not recognised). An event without
``event_id`` is never a repeat: its row is keyed by its Kafka coordinates.

An open window's keys are a set; once the window closes they are sealed into a sorted
array of 8 bytes a key (a late event is looked up by bisection), so an hour of ids at
2,000 events/s takes about 60 MB. At most ``capacity`` keys are held; past it the oldest
windows' keys are forgotten early, counted in ``rttm_metrics_state_evicted{state="ids"}``
and logged once: a repeat of one of those is counted again, and ``rttm metrics verify``
shows it.
"""

from __future__ import annotations

import hashlib
import logging
from array import array
from bisect import bisect_left

from rttm.metrics import stats

_LOG = logging.getLogger("rttm.metrics.repeats")
#: Key of an event without ``event_id``: never remembered, never a repeat.
NO_ID = 0
_MASK = (1 << 64) - 1
#: Spreads an event time (µs) over the 64 bits before it is mixed into a trade's key.
_SPREAD = 0x9E3779B97F4A7C15
#: When full, forget down to this share of the capacity in one pass.
_FORGET_TO = 0.9


def id_key(event_id: str | None, moment: float | None = None) -> int:
    """The 64-bit key of ``event_id`` (with ``moment``, for trade events); ``NO_ID`` if none."""
    if event_id is None:
        return NO_ID
    key = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")
    if moment is not None:
        key ^= (round(moment * 1_000_000) * _SPREAD) & _MASK
    return key or 1


class Repeats:
    """Keys counted per window: ``fresh`` says whether an event is new, and remembers it."""

    __slots__ = ("capacity", "held", "open", "sealed")

    def __init__(self, capacity: int = 10_000_000) -> None:
        self.capacity = capacity
        self.open: dict[float, set[int]] = {}  # windows still open: a set each
        self.sealed: dict[float, array[int]] = {}  # closed windows: sorted keys
        self.held = 0  # keys in both

    def fresh(self, key: int, window: float) -> bool:
        """False for a key already counted in ``window``; else remember it and say True."""
        if key == NO_ID:
            return True
        keys = self.open.get(window)
        if keys is not None:
            if key in keys:
                return False
            keys.add(key)
        else:
            sealed = self.sealed.get(window)
            if sealed is None:
                self.open[window] = {key}
            else:
                at = bisect_left(sealed, key)
                if at < len(sealed) and sealed[at] == key:
                    return False
                sealed.insert(at, key)
        self.held += 1
        if self.held > self.capacity:
            self._make_room()
        return True

    def seal_before(self, window: float) -> None:
        """Compact the keys of windows starting before ``window`` (now closed)."""
        for start in [start for start in self.open if start < window]:
            self.sealed[start] = array("Q", sorted(self.open.pop(start)))

    def forget_before(self, window: float) -> None:
        """Forget the keys of windows starting before ``window`` (past the horizon)."""
        for start in [start for start in (*self.open, *self.sealed) if start < window]:
            self._forget(start)

    def _forget(self, start: float) -> int:
        found = self.open.pop(start, None) or self.sealed.pop(start, None) or ()
        self.held -= len(found)
        return len(found)

    def _make_room(self) -> None:
        """Forget the oldest windows until a tenth of the capacity is free."""
        if not stats.COUNTERS.evicted.get("ids"):
            _LOG.warning(
                "more than %d event ids to remember on a shard: repeats of the oldest windows'"
                " events are no longer recognised (raise RTTM_METRICS_MAX_IDS)",
                self.capacity,
            )
        forgotten = 0
        for start in sorted((*self.open, *self.sealed)):
            if self.held <= self.capacity * _FORGET_TO:
                break
            forgotten += self._forget(start)
        stats.record_evicted("ids", forgotten)

    def __getstate__(self) -> tuple[int, dict[float, bytes], dict[float, bytes]]:
        """Compact: each window's keys as bytes of 64-bit integers."""
        return (
            self.capacity,
            {start: array("Q", keys).tobytes() for start, keys in self.open.items()},
            {start: keys.tobytes() for start, keys in self.sealed.items()},
        )

    def __setstate__(self, state: tuple[int, dict[float, bytes], dict[float, bytes]]) -> None:
        self.capacity, opened, sealed = state
        self.open = {start: set(_array(raw)) for start, raw in opened.items()}
        self.sealed = {start: _array(raw) for start, raw in sealed.items()}
        self.held = sum(map(len, self.open.values())) + sum(map(len, self.sealed.values()))

    def __len__(self) -> int:
        return self.held


def _array(raw: bytes) -> array[int]:
    keys = array("Q")
    keys.frombytes(raw)
    return keys
