"""Queue lag from the services' offset snapshots: messages, seconds and consumer status.

Per (consuming service, queue, partition) the tracker keeps the recent snapshots, ordered by
snapshot time, and answers "what did this partition look like at time T" for a window's
end. The status follows Burrow's evaluation over a sliding window of snapshots:

* STOP — no snapshot for ``stop_after`` (the consumer, or its reporter, is gone);
* STALL — a lag in every snapshot of the window, and the consumed offset has not moved
  for ``STALL_AFTER_S`` or more;
* WARN — a lag all along that never shrank across the window and grew overall (falling
  behind);
* OK — otherwise.

At most ``capacity`` partitions are tracked: a snapshot of a new one beyond it lets go the
least recently reported ones (counted once, ``take_evicted``), so that a producer that
reports a new partition in every snapshot cannot exhaust memory.

Lag in seconds is the lag divided by the consume rate over the window (how long the
backlog takes to drain at the current pace); with a lag and no progress it is how long the
consumed offset has not moved, a lower bound of the oldest unconsumed message's age.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from dataclasses import dataclass, field

from rttm.metrics import stats
from rttm.metrics.events import Snapshot
from rttm.metrics.limits import EVICT_TO, Limits
from rttm.metrics.windows import OK, STALL, STOP, WARN, QueueGauge

#: Snapshots considered for the rate and the status (Burrow's window).
STATUS_WINDOW_S = 60.0
#: No snapshot for this long: STOP.
STOP_AFTER_S = 60.0
#: A partition with no snapshot for this long is forgotten (bounded state); until then it
#: is reported as STOP, so a ConsumerStopped alert stays firing for a day.
FORGET_AFTER_S = 86_400.0
#: Least snapshots for a growing-lag verdict (two points always make a trend).
MIN_TREND_SNAPSHOTS = 3
#: A consumed offset that has not moved over snapshots spanning this long: STALL.
STALL_AFTER_S = 30.0

_LOG = logging.getLogger(__name__)

Point = tuple[float, int, int]  # (time, produced offset, consumed offset)


def _status(recent: list[Point], end: float) -> int:
    last_time = recent[-1][0]
    if end - last_time > STOP_AFTER_S:
        return STOP
    lags = [produced - consumed for _, produced, consumed in recent]
    stalled = recent[0][2] == recent[-1][2] and last_time - recent[0][0] >= STALL_AFTER_S
    if stalled and all(lag > 0 for lag in lags):
        return STALL
    if (
        len(recent) >= MIN_TREND_SNAPSHOTS
        and lags[0] > 0
        and lags[-1] > lags[0]
        and all(b >= a for a, b in itertools.pairwise(lags))
    ):
        return WARN
    return OK


@dataclass
class QueueTracker:
    """The recent snapshots of every queue partition a shard owns."""

    parts: dict[tuple[str, str, int], list[Point]] = field(default_factory=dict)
    #: partition -> (consumed offset, when it was first seen there): how long a stalled
    #: consumer has not moved, beyond the snapshots kept.
    moved: dict[tuple[str, str, int], tuple[int, float]] = field(default_factory=dict)
    capacity: int = Limits.partitions  # partitions tracked at most (the shard sets its share)
    evicted: int = 0  # partitions let go for space since the last ``take_evicted``

    def add(self, snapshot: Snapshot) -> None:
        """Record one snapshot (out-of-order arrivals are put in place)."""
        service, topic, partition, produced, consumed, moment = snapshot
        key = (service, topic, partition)
        points = self.parts.pop(key, None)  # re-inserted: the most recently reported last
        if points is None:
            points = []
            if len(self.parts) >= self.capacity:
                self._evict()
        self.parts[key] = points
        point = (moment, produced, consumed)
        if not points or moment >= points[-1][0]:
            points.append(point)
            if self.moved.get(key, (None,))[0] != consumed:
                self.moved[key] = (consumed, moment)
        else:
            bisect.insort(points, point)

    def take_evicted(self) -> int:
        """Partitions let go for space since the last call (each is counted once)."""
        count, self.evicted = self.evicted, 0
        return count

    def _evict(self) -> None:
        excess = len(self.parts) - int(self.capacity * EVICT_TO) + 1
        for key in list(itertools.islice(self.parts, excess)):
            del self.parts[key]
            self.moved.pop(key, None)
        if not self.evicted and not stats.COUNTERS.evicted.get("partitions"):
            _LOG.warning(
                "more than %d queue partitions on a shard: the least recently reported are no"
                " longer tracked (counted in partitions_untracked; raise"
                " RTTM_METRICS_MAX_PARTITIONS)",
                self.capacity,
            )
        self.evicted += excess
        stats.record_evicted("partitions", excess)

    def gauges(self, end: float) -> list[QueueGauge]:
        """Every partition's state at ``end`` (snapshots before it); prunes old ones."""
        out = []
        for key, points in list(self.parts.items()):
            upto = bisect.bisect_left(points, (end,))
            if upto == 0:
                continue  # first snapshot is after this window
            recent_from = bisect.bisect_left(points, (points[upto - 1][0] - STATUS_WINDOW_S,))
            recent = points[recent_from:upto]
            last_time, produced, consumed = recent[-1]
            if end - last_time > FORGET_AFTER_S:
                del self.parts[key]
                self.moved.pop(key, None)
                continue
            lag = max(produced - consumed, 0)
            first_time, _, first_consumed = recent[0]
            rate = None
            if last_time > first_time:
                rate = (consumed - first_consumed) / (last_time - first_time)
            if lag == 0:
                lag_seconds = 0.0
            elif rate is not None and rate > 0:
                lag_seconds = lag / rate
            else:  # not moving (or rewound): how long it has been at this offset
                offset, since = self.moved.get(key, (consumed, recent[0][0]))
                if offset != consumed:
                    since = next(t for t, _, done in recent if done == consumed)
                lag_seconds = end - since
            service, topic, partition = key
            out.append(
                QueueGauge(service, topic, partition, lag, lag_seconds, rate, _status(recent, end))
            )
            keep_from = bisect.bisect_left(points, (end - 2 * STATUS_WINDOW_S,))
            if 0 < keep_from < upto:  # older snapshots can no longer matter
                del points[: keep_from - 1]
        return out
