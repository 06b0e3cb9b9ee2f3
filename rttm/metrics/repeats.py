"""Repeated deliveries dropped the way the tables drop them: by the producer's ``event_id``.

The ingestion stores each event once (its dedupe key is unique per table), while Kafka may
deliver it twice: a producer retry, a service that resends. Counting deliveries would put
the metrics above the tables, so each shard remembers the ids of the events it counted,
as 64-bit hashes grouped by the event's window, for as long as that window can still be
corrected (``RTTM_METRICS_CORRECTION``): a repeat within that time is dropped. Trade events
are keyed by id *and* event time, as their table is. An event without ``event_id`` is never
a repeat (its table row is keyed by its Kafka coordinates, unique to the delivery).

Memory is bounded by ``capacity`` ids (about 80 bytes each, a set entry plus 8 bytes of a
window's array). When full, the oldest windows' ids are forgotten early, counted in
``rttm_metrics_state_evicted{state="ids"}`` and logged once: a repeat of one of those
would be counted again, and ``rttm metrics verify`` would show it.
"""

from __future__ import annotations

import hashlib
import logging
from array import array

from rttm.metrics import stats

_LOG = logging.getLogger("rttm.metrics.repeats")
#: Key of an event without ``event_id``: never remembered, never a repeat.
NO_ID = 0
_MASK = (1 << 64) - 1
#: Spreads an event time (µs) over the 64 bits before it is mixed into a trade's key.
_SPREAD = 0x9E3779B97F4A7C15


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

    __slots__ = ("by_window", "capacity", "seen")

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self.seen: set[int] = set()
        self.by_window: dict[float, array[int]] = {}

    def fresh(self, key: int, window: float) -> bool:
        """False for a key already counted; else remember it under ``window`` and say True."""
        if key == NO_ID:
            return True
        seen = self.seen
        if key in seen:
            return False
        seen.add(key)
        keys = self.by_window.get(window)
        if keys is None:
            keys = self.by_window[window] = array("Q")
        keys.append(key)
        if len(seen) > self.capacity:
            self._make_room()
        return True

    def forget_before(self, window: float) -> None:
        """Forget the keys of windows starting before ``window`` (past the horizon)."""
        for start in [start for start in self.by_window if start < window]:
            self._forget(start)

    def _forget(self, start: float) -> int:
        keys = self.by_window.pop(start)
        self.seen.difference_update(keys)
        return len(keys)

    def _make_room(self) -> None:
        """Forget the oldest windows until a tenth of the capacity is free."""
        if not stats.COUNTERS.evicted.get("ids"):
            _LOG.warning(
                "more than %d event ids to remember on a shard: repeats of the oldest windows'"
                " events are no longer recognised (raise RTTM_METRICS_MAX_IDS)",
                self.capacity,
            )
        forgotten = 0
        target = int(self.capacity * 0.9)
        for start in sorted(self.by_window):
            if len(self.seen) <= target:
                break
            forgotten += self._forget(start)
        stats.record_evicted("ids", forgotten)

    def __getstate__(self) -> tuple[int, dict[float, bytes]]:
        """Compact: each window's keys as bytes (the set is rebuilt from them)."""
        return self.capacity, {start: keys.tobytes() for start, keys in self.by_window.items()}

    def __setstate__(self, state: tuple[int, dict[float, bytes]]) -> None:
        self.capacity, windows = state
        self.by_window = {}
        self.seen = set()
        for start, raw in windows.items():
            keys = array("Q")
            keys.frombytes(raw)
            self.by_window[start] = keys
            self.seen.update(keys)

    def __len__(self) -> int:
        return len(self.seen)
