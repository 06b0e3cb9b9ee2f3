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

import logging
from array import array
from bisect import bisect_left
from hashlib import blake2b

from rttm.metrics import stats

_LOG = logging.getLogger(__name__)
#: Key of an event without ``event_id``: never remembered, never a repeat.
NO_ID = 0
_MASK = (1 << 64) - 1
#: Length of a UUID as text: 8-4-4-4-12 hex digits.
_UUID_LENGTH = 36
#: UUID versions whose last 64 bits (after the variant) are random: 4 and 7.
_RANDOM_VERSIONS = frozenset("47")
#: The first hex digit of the variant field of an RFC 9562 UUID.
_RFC_VARIANT = frozenset("89abAB")
#: When full, forget down to this share of the capacity in one pass.
_FORGET_TO = 0.9


def id_key(event_id: str | None, moment: float | None = None) -> int:
    """The 64-bit key of ``event_id`` (with ``moment``, for trade events); ``NO_ID`` if none.

    A UUID of version 4 or 7 in its usual text form (``rttm.emit`` makes UUIDv7s) is keyed
    by its last 64 bits, which are random in those versions; any other id by a BLAKE2b hash
    of it (in a version 1 or 6 UUID the last bits are the host's, the same for every id).
    That is half the cost per event, and stable across processes, as snapshots need.
    """
    if event_id is None:
        return NO_ID
    if (
        len(event_id) == _UUID_LENGTH
        and event_id[23] == "-"
        and event_id[14] in _RANDOM_VERSIONS
        and event_id[19] in _RFC_VARIANT
    ):
        try:
            key = int(event_id[19:].replace("-", ""), 16)
        except ValueError:
            key = _digest(event_id)
    else:
        key = _digest(event_id)
    if moment is not None:  # a float's hash is the same in every process (not salted)
        key ^= hash(moment) & _MASK
    return key or 1


def _digest(event_id: str) -> int:
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "little")


class Repeats:
    """Keys counted per window: ``fresh`` says whether an event is new, and remembers it."""

    __slots__ = ("capacity", "open", "sealed", "sealed_keys", "unsorted")

    def __init__(self, capacity: int = 10_000_000) -> None:
        self.capacity = capacity
        self.open: dict[float, set[int]] = {}  # windows still open: a set each
        self.sealed: dict[float, array[int]] = {}  # closed windows: their keys
        self.unsorted: set[float] = set()  # sealed windows not sorted yet (no lookup so far)
        self.sealed_keys = 0

    def fresh(self, key: int, window: float) -> bool:
        """False for a key already counted in ``window``; else remember it and say True.

        Call with a key other than ``NO_ID``.
        """
        keys = self.open.get(window)
        if keys is None:
            return self._fresh_elsewhere(key, window)
        if key in keys:
            return False
        keys.add(key)
        return True

    def _fresh_elsewhere(self, key: int, window: float) -> bool:
        """A new open window, or a closed one (a late event): its sorted keys, bisected."""
        sealed = self.sealed.get(window)
        if sealed is None:
            self.open[window] = {key}
            return True
        if window in self.unsorted:  # sorted on the first lookup: most windows never need it
            sealed = self.sealed[window] = array("Q", sorted(sealed))
            self.unsorted.discard(window)
        at = bisect_left(sealed, key)
        if at < len(sealed) and sealed[at] == key:
            return False
        sealed.insert(at, key)
        self.sealed_keys += 1
        return True

    def seal_before(self, window: float) -> None:
        """Compact the keys of windows starting before ``window`` (closed): 8 bytes a key."""
        for start in [start for start in self.open if start < window]:
            keys = self.sealed[start] = array("Q", self.open.pop(start))
            self.unsorted.add(start)
            self.sealed_keys += len(keys)
        if len(self) > self.capacity:
            self._make_room()

    def forget_before(self, window: float) -> None:
        """Forget the keys of windows starting before ``window`` (past the horizon)."""
        for start in [start for start in (*self.open, *self.sealed) if start < window]:
            self._forget(start)

    def _forget(self, start: float) -> int:
        found = self.open.pop(start, None)
        if found is not None:
            return len(found)
        sealed = self.sealed.pop(start, ())
        self.unsorted.discard(start)
        self.sealed_keys -= len(sealed)
        return len(sealed)

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
            if len(self) <= self.capacity * _FORGET_TO:
                break
            forgotten += self._forget(start)
        stats.record_evicted("ids", forgotten)

    def __getstate__(self) -> tuple[int, dict[float, bytes], dict[float, bytes], set[float]]:
        """Compact: each window's keys as bytes of 64-bit integers."""
        return (
            self.capacity,
            {start: array("Q", keys).tobytes() for start, keys in self.open.items()},
            {start: keys.tobytes() for start, keys in self.sealed.items()},
            set(self.unsorted),
        )

    def __setstate__(
        self, state: tuple[int, dict[float, bytes], dict[float, bytes], set[float]]
    ) -> None:
        self.capacity, opened, sealed, self.unsorted = state
        self.open = {start: set(_array(raw)) for start, raw in opened.items()}
        self.sealed = {start: _array(raw) for start, raw in sealed.items()}
        self.sealed_keys = sum(map(len, self.sealed.values()))

    def __len__(self) -> int:
        """Keys held (the open windows' sets are counted as they are sealed)."""
        return self.sealed_keys + sum(map(len, self.open.values()))


def _array(raw: bytes) -> array[int]:
    keys = array("Q")
    keys.frombytes(raw)
    return keys
