"""Where each in-flight trade is: stage moves, hop and end-to-end latency, stuck trades.

A trade is tracked from its first event until a terminal one (then forgotten, so state is
bounded by the trades in flight), and at most ``capacity`` trades are tracked: beyond it the
least recently active ones are let go, counted once (``take_evicted``) and logged, so that
never-completed trades cannot exhaust memory; their events stay in the tables.

A trade whose last event is not terminal and that sees no further event for its stage's
``stuck_after`` of event time is stuck; a later event recovers it. Deadlines sit in a heap
ordered by time and are checked as the watermark passes them; a deadline made stale by a
newer event is skipped when it comes up.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import sys
from collections import deque
from dataclasses import dataclass, field

from rttm.metrics import stats
from rttm.metrics.events import Trade
from rttm.metrics.limits import EVICT_TO, Limits
from rttm.metrics.pipeline import Pipeline
from rttm.metrics.sketch import Sketch
from rttm.metrics.windows import WindowAcc

#: A stuck trade that never moves again is forgotten after this long (bounded state).
FORGET_STUCK_AFTER_S = 86_400.0
#: Ended trades are remembered this long, so a straggler or a redelivered event of a
#: finished trade does not start it again (and later make it look stuck).
REMEMBER_ENDED_S = 300.0

_CHECK, _FORGET = 0, 1
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stuck:
    """A trade found stuck: where it stopped and since when."""

    trade_id: str
    stage: str
    service: str
    last_event_type: str
    last_event_time: float
    detected_at: float  # event time: last_event_time + the stage's stuck_after


@dataclass(frozen=True, slots=True)
class Recovered:
    """A stuck trade that moved again."""

    trade_id: str
    last_event_time: float  # identifies the stuck record (the trade's last event then)
    recovered_at: float  # event time of the event that moved it


class _Live:
    """An in-flight trade (slots: millions of updates, and cheap to pickle)."""

    __slots__ = ("created", "entered", "last", "last_type", "service", "stage", "stuck")

    def __init__(
        self, stage: int, moment: float, created: float | None, event_type: str, service: str
    ) -> None:
        self.stage = stage  # index of the furthest stage reached (-1: none yet)
        self.entered = moment  # when it reached that stage
        self.created = created  # time of its first-stage event, if seen
        self.last_type, self.service, self.last = event_type, service, moment
        self.stuck = False

    def __getstate__(self) -> tuple[object, ...]:
        return (
            self.stage,
            self.entered,
            self.created,
            self.last_type,
            self.service,
            self.last,
            self.stuck,
        )

    def __setstate__(self, state: tuple[object, ...]) -> None:
        (
            self.stage,
            self.entered,
            self.created,
            self.last_type,
            self.service,
            self.last,
            self.stuck,
        ) = state  # type: ignore[assignment]


@dataclass
class TradeTracker:
    """In-flight trades of one shard."""

    pipeline: Pipeline
    live: dict[str, _Live] = field(default_factory=dict)
    deadlines: list[tuple[float, str, float, int]] = field(default_factory=list)
    ended: dict[str, float] = field(default_factory=dict)
    ended_order: deque[tuple[float, str]] = field(default_factory=deque)
    stuck_now: dict[tuple[str, str], int] = field(default_factory=dict)  # (stage, service)
    capacity: int = Limits.trades  # trades tracked at most (the shard sets its share)
    evicted: int = 0  # trades let go for space since the last ``take_evicted``

    def observe(self, event: Trade, acc: WindowAcc | None) -> Recovered | None:
        """Apply one trade event; its latencies and outcome go into ``acc`` (None: late).

        Trades started, completed and rejected are counted per event of those types, as a
        count over the stored events gives them, whatever the order the events arrive in.
        """
        trade_id, service, event_type, moment, _offset, _key = event
        pipeline = self.pipeline
        first = event_type in pipeline.first_events
        if acc is not None:
            if first:
                acc.started += 1
            if event_type in pipeline.completed:
                acc.completed += 1
            elif event_type in pipeline.rejected:
                acc.rejected += 1
        move = pipeline.moves.get(event_type)
        state = self.live.get(trade_id)
        recovered = None
        if state is None:
            if trade_id in self.ended:
                return None
            created = moment if first else None
            index = move[0] if move is not None and move[1] else -1
            state = self.live[trade_id] = _Live(
                index, moment, created, sys.intern(event_type), sys.intern(service)
            )
            if len(self.live) > self.capacity:
                self._evict()
        else:
            self.live[trade_id] = self.live.pop(trade_id)  # most recently active last
            if state.created is None and first:
                state.created = moment  # its first event arrived after a later one
            if state.stuck and moment > state.last:  # not a redelivery of its last event
                recovered = Recovered(trade_id, state.last, moment)
                self._unstick(state)
            if move is not None and move[1] and move[0] > state.stage:
                if acc is not None and state.stage != -1:
                    hop = (pipeline.stages[state.stage].name, pipeline.stages[move[0]].name)
                    sketch = acc.hops.get(hop)
                    if sketch is None:
                        sketch = acc.hops[hop] = Sketch()
                    sketch.add((moment - state.entered) * 1000)
                state.stage, state.entered = move[0], moment
            if moment >= state.last:
                state.last_type, state.last = sys.intern(event_type), moment
                state.service = sys.intern(service)
        if event_type in pipeline.completed or event_type in pipeline.rejected:
            if acc is not None and state.created is not None and event_type in pipeline.completed:
                acc.e2e.add((moment - state.created) * 1000)
            self._end(trade_id, moment)
        else:
            stuck_after = pipeline.stages[self._stage_index(state)].stuck_after_s
            heapq.heappush(self.deadlines, (state.last + stuck_after, trade_id, state.last, _CHECK))
            if len(self.deadlines) > 2 * len(self.live) + 10_000:
                self._compact_deadlines()
        return recovered

    def take_evicted(self) -> int:
        """Trades let go for space since the last call (each is counted once)."""
        count, self.evicted = self.evicted, 0
        return count

    def _evict(self) -> None:
        """Let the least recently active trades go, down to ``EVICT_TO`` of the capacity."""
        excess = len(self.live) - int(self.capacity * EVICT_TO)
        for trade_id in list(itertools.islice(self.live, excess)):
            state = self.live.pop(trade_id)
            if state.stuck:
                self._unstick(state)
        if not self.evicted and not stats.COUNTERS.evicted.get("trades"):
            _LOG.warning(
                "more than %d trades in flight on a shard: the least recently active are no"
                " longer tracked (counted in trades_untracked; raise RTTM_METRICS_MAX_TRADES)",
                self.capacity,
            )
        self.evicted += excess
        stats.record_evicted("trades", excess)

    def _compact_deadlines(self) -> None:
        """One deadline per tracked trade: those of ended, moved or let-go trades dropped."""
        heap = []
        for trade_id, state in self.live.items():
            if state.stuck:
                heap.append((state.last + FORGET_STUCK_AFTER_S, trade_id, state.last, _FORGET))
            else:
                after = self.pipeline.stages[self._stage_index(state)].stuck_after_s
                heap.append((state.last + after, trade_id, state.last, _CHECK))
        heapq.heapify(heap)
        self.deadlines = heap

    def due(self, until: float) -> list[Stuck]:
        """Trades whose deadline is at or before ``until`` (event time): now stuck."""
        found = []
        heap = self.deadlines
        while heap and heap[0][0] <= until:
            deadline, trade_id, last, kind = heapq.heappop(heap)
            state = self.live.get(trade_id)
            if state is None or state.last != last:
                continue  # the trade ended or moved on since
            if kind == _FORGET:
                if state.stuck:
                    self._unstick(state)
                    del self.live[trade_id]
                continue
            if state.stuck:
                continue
            state.stuck = True
            stage = self.pipeline.stages[self._stage_index(state)].name
            key = (stage, state.service)
            self.stuck_now[key] = self.stuck_now.get(key, 0) + 1
            found.append(Stuck(trade_id, stage, state.service, state.last_type, last, deadline))
            heapq.heappush(heap, (last + FORGET_STUCK_AFTER_S, trade_id, last, _FORGET))
        return found

    def forget_ended(self, before: float) -> None:
        """Drop the memory of trades that ended before ``before``."""
        order = self.ended_order
        while order and order[0][0] < before:
            moment, trade_id = order.popleft()
            if self.ended.get(trade_id) == moment:
                del self.ended[trade_id]

    def _stage_index(self, state: _Live) -> int:
        """The stage of the trade's last event (where it stopped), else the furthest one."""
        move = self.pipeline.moves.get(state.last_type)
        return move[0] if move is not None else max(state.stage, 0)

    def _unstick(self, state: _Live) -> None:
        state.stuck = False
        key = (self.pipeline.stages[self._stage_index(state)].name, state.service)
        left = self.stuck_now.get(key, 0) - 1
        if left > 0:
            self.stuck_now[key] = left
        else:
            self.stuck_now.pop(key, None)

    def _end(self, trade_id: str, moment: float) -> None:
        state = self.live.pop(trade_id, None)
        if state is not None and state.stuck:
            self._unstick(state)
        self.ended[trade_id] = moment
        self.ended_order.append((moment, trade_id))
        if len(self.ended_order) > self.capacity:  # remembered for less than REMEMBER_ENDED_S
            old_moment, old_id = self.ended_order.popleft()
            if self.ended.get(old_id) == old_moment:
                del self.ended[old_id]
