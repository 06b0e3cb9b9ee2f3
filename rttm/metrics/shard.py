"""One shard of the metrics engine: windows on event time, its trades and its queues.

The watermark of a shard is the oldest newest-event-time among the source partitions that
still have data to deliver, minus the allowed lateness (and nothing until every partition
has reported once) — a partition being replayed holds it
back, so a backlog never makes its own events late. Partitions read to their end (the
source's heartbeats) stop holding it back; when all are, and their heartbeats are fresh,
the watermark moves on with the wall clock, so windows close and trades become stuck while
the platform is silent. A window closes when the watermark passes its end.

An event for a closed window no older than the correction horizon (``correction_s``, event
time before the oldest open window) goes into that window's *correction*, sent to the merge
step about once a second, which rewrites the window's stored counts; it is counted in
``corrected_events`` of the oldest open window. An older one is counted as ``late_events``
there, noted as uncounted, and only moves its trade. Repeats of counted events, by
``event_id`` (:mod:`rttm.metrics.repeats`), are dropped and counted in ``repeated_events``.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bytewax.operators import StatefulLogic

from rttm.core import stopping
from rttm.core.errors import RttmError
from rttm.metrics import stats
from rttm.metrics.events import (
    DLQ,
    ERROR,
    KEY,
    LABELS,
    LOG,
    LOG_LEVEL,
    OFFSET,
    QUEUE,
    SNAPSHOT_TIME,
    TIME,
    TIME_AT,
    TRADE,
    TRADE_LABELS,
    Facts,
    Uncounted,
)
from rttm.metrics.limits import OTHER, Limits
from rttm.metrics.pipeline import Pipeline
from rttm.metrics.queues import QueueTracker
from rttm.metrics.repeats import Repeats
from rttm.metrics.trades import REMEMBER_ENDED_S, Recovered, Stuck, TradeTracker
from rttm.metrics.windows import WindowAcc, past_gap, window_start

_LOG = logging.getLogger(__name__)
#: How often an idle shard re-checks its watermark (wall clock).
TICK_S = 1.0
#: Heartbeats older than this do not count: the worker was busy (or blocked), not idle.
FRESH_S = 2.0
#: Log levels counted by ``log_events`` (the WARN/ERROR family; others are ignored).
COUNTED_LEVELS = frozenset({"WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"})
#: Events dated further than this beyond the wall clock are not trusted with the
#: watermark (a producer's clock, or a typo, could otherwise close hours of windows at once):
#: they are counted as ``future_events`` and otherwise ignored.
MAX_FUTURE_S = 300.0
#: The shape of the shard's and merge step's pickled state; raised when it changes (2:
#: corrections, repeats and uncounted events; 3: shards keyed ``shard-n``, as the
#: ingestion's, where they were ``n``).
STATE_FORMAT = 3
#: Uncounted events a shard holds at most before it reports them (else once a tick).
MAX_UNCOUNTED = 10_000
_NEG_INF = float("-inf")
_OTHER2, _OTHER3 = (OTHER, OTHER), (OTHER, OTHER, OTHER)
K = TypeVar("K", bound=tuple[str, ...])


def _bump(counts: dict[K, int], key: K, cap: int, other: K) -> None:
    """Count one ``key``; past ``cap`` label sets, a new one counts as ``other``."""
    count = counts.get(key)
    if count is None and len(counts) >= cap:
        key = other
        count = counts.get(key)
    counts[key] = (count or 0) + 1


@dataclass(frozen=True)
class EngineConfig:
    """What every shard and the merge step agree on."""

    pipeline: Pipeline
    window_s: float = 10.0
    lateness_s: float = 5.0
    #: A late event for a closed window this recent (event time) corrects it; older: late.
    correction_s: float = 3600.0
    shards: int = 2
    #: Every source partition ("topic/partition"): none may be passed by the watermark
    #: before it has reported once (data or a heartbeat).
    sources: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)

    def shard_share(self, total: int) -> int:
        """One shard's part of a whole-engine cap."""
        return max(total // self.shards, 1)

    def layout(self) -> tuple[float, int]:
        """What recovered state depends on: windows and shard routing must not change."""
        return self.window_s, self.shards

    def check_state(self, state: object, what: str) -> None:
        """Refuse recovered state of another format, window length or shard count."""
        found = vars(state).get("format", 1)  # an instance's own: the class has the default
        if found != STATE_FORMAT:
            msg = (
                f"the recovery store's {what} state has format {found}, this RTTM reads"
                f" {STATE_FORMAT}: start a new recovery directory (the flow computes again"
                " what the topics hold)"
            )
            raise RttmError(msg)
        self.check_layout(vars(state)["layout"], what)

    def check_layout(self, stored: tuple[float, int], what: str) -> None:
        """Refuse a recovery store written with another window length or shard count."""
        if stored != self.layout():
            msg = (
                f"the recovery store's {what} state was made with a {stored[0]:g}s window"
                f" and {stored[1]} shards, not {self.window_s:g}s and {self.shards}:"
                " keep RTTM_METRICS_WINDOW and RTTM_METRICS_SHARDS, or start a new store"
            )
            raise RttmError(msg)


@dataclass(slots=True)
class ShardReport:
    """What a shard sends the merge step: closed windows, stuck and recovered trades.

    Also the corrections of windows it closed before (late events to add to them), and the
    events it left uncounted.
    """

    shard: str
    frontier: float  # every window ending at or before this is final from this shard
    windows: list[tuple[float, WindowAcc]]
    stuck: list[Stuck]
    recovered: list[Recovered]
    corrections: list[tuple[float, WindowAcc]] = field(default_factory=list)
    uncounted: list[Uncounted] = field(default_factory=list)


@dataclass
class _Source:
    high: float = _NEG_INF  # newest event time seen from the partition
    caught_up: bool = False  # its last word was a heartbeat: read to its end
    seen: float = 0.0  # wall clock of its last chunk


@dataclass
class ShardState:
    """Everything a shard keeps; pickled whole into Bytewax snapshots."""

    trades: TradeTracker
    queues: QueueTracker = field(default_factory=QueueTracker)
    sources: dict[str, _Source] = field(default_factory=dict)
    windows: dict[float, WindowAcc] = field(default_factory=dict)
    closed_until: float | None = None
    watermark: float = _NEG_INF
    newest: float = _NEG_INF
    newest_at: float = 0.0  # wall clock when ``newest`` last advanced
    shard: str = ""  # the shard's key (Bytewax does not pass it to the logic's builder)
    layout: tuple[float, int] = (0.0, 0)  # EngineConfig.layout() it was made with
    future_unplaced: dict[str, int] = field(default_factory=dict)  # future events to count
    stages: tuple[str, ...] = ()  # the pipeline's stage names it was made with
    corrections: dict[float, WindowAcc] = field(default_factory=dict)  # closed window -> late
    uncounted: list[Uncounted] = field(default_factory=list)  # not yet reported
    repeats: Repeats = field(default_factory=Repeats)
    flushed_at: float = 0.0  # wall clock when corrections were last reported
    correction_s: float = 0.0  # the horizon its ids were remembered for
    #: No window before this is corrected (the horizon was raised since: the ids of older
    #: windows were not remembered, nor are they kept by the merge step).
    correction_floor: float = _NEG_INF
    format: int = STATE_FORMAT


class ShardLogic(StatefulLogic[Facts, ShardReport, bytes]):
    """The stateful step of one shard (Bytewax calls it per chunk and on its timer)."""

    def __init__(self, config: EngineConfig, resume: bytes | None) -> None:
        self._config = config
        stages = tuple(config.pipeline.stage_names())
        if resume is None:
            self._state = ShardState(TradeTracker(config.pipeline))
        else:
            self._state = pickle.loads(resume)  # noqa: S301 - our own recovery snapshot
            config.check_state(self._state, "shard")
            if self._state.stages != stages:  # stage indices would mean other stages now
                _LOG.warning("pipeline changed since the snapshot: in-flight trades forgotten")
                self._state.trades = TradeTracker(config.pipeline)
            self._state.trades.pipeline = config.pipeline
            for source in self._state.sources.values():  # new data may have come meanwhile:
                source.caught_up = False  # each holds the watermark until it says otherwise
            state = self._state
            if config.correction_s > state.correction_s:  # a longer horizon starts from now
                closed = _NEG_INF if state.closed_until is None else state.closed_until
                state.correction_floor = max(state.correction_floor, closed - state.correction_s)
        self._state.layout, self._state.stages = config.layout(), stages
        self._state.correction_s = config.correction_s
        #: Label sets a shard counts per window and counter: twice what the merge step
        #: keeps, so that its choice of the largest is rarely cut short here.
        self._per_window = 2 * config.limits.series
        self._state.trades.capacity = config.shard_share(config.limits.trades)
        self._state.queues.capacity = config.shard_share(config.limits.partitions)
        self._state.repeats.capacity = config.shard_share(config.limits.ids)

    # -- Bytewax hooks ------------------------------------------------------------------

    def on_item(self, value: Facts) -> tuple[list[ShardReport], bool]:
        """Apply a chunk, note its partition's progress, close what the watermark passed."""
        now = time.time()
        state = self._state
        state.shard = value.shard
        source = state.sources.get(value.source)
        if source is None:
            source = state.sources[value.source] = _Source()
        high = value.high
        if high > now + MAX_FUTURE_S:
            high = self._drop_future(value, now + MAX_FUTURE_S)
        recovered = self._apply(value) if value.events or value.invalid else []
        if high > source.high:
            source.high = high
        if high > state.newest:
            state.newest, state.newest_at = high, now
        source.caught_up, source.seen = value.caught_up, now
        return self._advance(now, recovered), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[ShardReport], bool]:
        """The timer: an idle shard's watermark moves with the wall clock."""
        return self._advance(time.time(), []), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[ShardReport], bool]:
        """End of a bounded run: close every window up to the newest event.

        Not when the flow is only stopping: open windows stay open, in the state.
        """
        state = self._state
        if math.isinf(state.newest) or stopping.requested():
            return [], StatefulLogic.RETAIN
        end = window_start(state.newest, self._config.window_s) + self._config.window_s
        return [self._close(end, state.newest, [], time.time())], StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """Wake up every ``TICK_S`` once data flows."""
        return datetime.now(UTC) + timedelta(seconds=TICK_S) if self._state.sources else None

    def snapshot(self) -> bytes:
        """The whole state, pickled (immutable, as Bytewax requires)."""
        return pickle.dumps(self._state, protocol=pickle.HIGHEST_PROTOCOL)

    # -- events -------------------------------------------------------------------------

    def _drop_future(self, chunk: Facts, limit: float) -> float:
        """Remove events dated after ``limit`` from ``chunk``, counting them; the new high."""
        at = TIME_AT[chunk.kind]
        kept = [event for event in chunk.events if event[at] <= limit]
        future = len(chunk.events) - len(kept)
        if chunk.kind != QUEUE:  # stored by the ingestion, so noted for the recount
            self._state.uncounted.extend(
                Uncounted(chunk.topic, chunk.partition, event[OFFSET], event[at], "future")
                for event in chunk.events
                if event[at] > limit
            )
        chunk.events = kept
        high = max((event[at] for event in kept), default=_NEG_INF)
        moment = high if not math.isinf(high) else self._state.newest
        acc = self._acc(moment) if not math.isinf(moment) else None
        if acc is None:  # no window to count them in yet (or it closed): the next one
            unplaced = self._state.future_unplaced
            unplaced[chunk.topic] = unplaced.get(chunk.topic, 0) + future
        else:
            acc.future[chunk.topic] = acc.future.get(chunk.topic, 0) + future
        return high

    def _acc(self, moment: float) -> WindowAcc | None:
        """The open window of ``moment``, or None if that window is closed (late)."""
        state = self._state
        start = window_start(moment, self._config.window_s)
        if state.closed_until is not None and start < state.closed_until:
            return None
        acc = state.windows.get(start)
        if acc is None:
            acc = state.windows[start] = WindowAcc()
        return acc

    def _arrivals(self) -> WindowAcc:
        """The oldest open window: where late, corrected and repeated events are counted."""
        state = self._state
        assert state.closed_until is not None  # noqa: S101 - only closed windows make late
        acc = state.windows.get(state.closed_until)
        if acc is None:
            acc = state.windows[state.closed_until] = WindowAcc()
        return acc

    def _late(self, topic: str) -> None:
        late = self._arrivals().late
        late[topic] = late.get(topic, 0) + 1

    def _apply(self, chunk: Facts) -> list[Recovered]:
        recovered: list[Recovered] = []
        topic = chunk.topic
        if chunk.kind == QUEUE:
            for event in chunk.events:
                if self._acc(event[SNAPSHOT_TIME]) is None:
                    self._late(topic)
                self._state.queues.add(event)
        else:
            recovered = self._count(chunk)
        if chunk.invalid:
            moment = chunk.high if not math.isinf(chunk.high) else self._state.newest
            acc = self._acc(moment) if not math.isinf(moment) else None
            if acc is None and self._state.closed_until is not None:
                acc = self._arrivals()  # no window of its own: counted on arrival
            if acc is not None:
                acc.invalid[topic] = acc.invalid.get(topic, 0) + chunk.invalid
        return recovered

    def _count(self, chunk: Facts) -> list[Recovered]:
        """Trade, DLQ, error and log events: counters and sketches of the event's window.

        The window is open, or closed and within the horizon (its correction), or older
        (late: not counted). A repeat of an event already counted is dropped.
        """
        state, length, cap = self._state, self._config.window_s, self._per_window
        kind, topic = chunk.kind, chunk.topic
        closed = state.closed_until
        oldest = (
            _NEG_INF
            if closed is None
            else max(closed - self._config.correction_s, state.correction_floor)
        )
        windows, corrections, repeats = state.windows, state.corrections, state.repeats
        trades = state.trades if kind == TRADE else None
        recovered: list[Recovered] = []
        late = corrected = repeated = 0
        for event in chunk.events:
            moment = event[TIME]
            start = window_start(moment, length)
            if closed is None or start >= closed:
                acc = windows.get(start)
                if acc is None:
                    acc = windows[start] = WindowAcc()
            elif start >= oldest:
                acc = corrections.get(start)
                if acc is None:
                    acc = corrections[start] = WindowAcc()
            else:
                late += 1
                state.uncounted.append(
                    Uncounted(topic, chunk.partition, event[OFFSET], moment, "late")
                )
                if trades is not None:  # still moves its trade, without counting
                    back = trades.observe(event, None)
                    if back is not None:
                        recovered.append(back)
                continue
            key = event[KEY]
            if key and not repeats.fresh(key, start):
                repeated += 1
                continue
            if closed is not None and start < closed:
                corrected += 1
            if trades is not None:
                label = event[TRADE_LABELS]  # the hot path: _bump inlined
                counts = acc.events
                count = counts.get(label)
                if count is None and len(counts) >= cap:
                    label = _OTHER2
                    count = counts.get(label)
                counts[label] = (count or 0) + 1
                back = trades.observe(event, acc)
                if back is not None:
                    recovered.append(back)
            elif kind == DLQ:
                _bump(acc.dlq, event[LABELS], cap, _OTHER2)
            elif kind == ERROR:
                _bump(acc.errors, event[LABELS], cap, _OTHER2)
            elif kind == LOG and event[LOG_LEVEL].upper() in COUNTED_LEVELS:
                _bump(acc.logs, event[LABELS], cap, _OTHER3)
        if late or corrected or repeated:
            self._note_arrivals(topic, late, corrected, repeated, chunk)
        return recovered

    def _note_arrivals(
        self, topic: str, late: int, corrected: int, repeated: int, chunk: Facts
    ) -> None:
        """Count a chunk's late, corrected and repeated events where they arrived."""
        if self._state.closed_until is None:  # nothing closed yet: only repeats, in place
            moment = chunk.high if not math.isinf(chunk.high) else self._state.newest
            acc = self._acc(moment)
        else:
            acc = self._arrivals()
        assert acc is not None  # noqa: S101 - an open window, or the oldest open one
        for into, count in ((acc.late, late), (acc.corrected, corrected), (acc.repeated, repeated)):
            if count:
                into[topic] = into.get(topic, 0) + count
        stats.record_arrivals(late, corrected, repeated)

    # -- time ---------------------------------------------------------------------------

    def _watermark(self, now: float) -> float:
        state = self._state
        if not self._config.sources <= state.sources.keys():
            return _NEG_INF  # a partition not heard of yet may hold the oldest events
        lateness = self._config.lateness_s
        pending = [s.high for s in state.sources.values() if not s.caught_up and s.high > _NEG_INF]
        if pending:
            return min(pending) - lateness
        if math.isinf(state.newest) or any(
            now - s.seen > FRESH_S for s in state.sources.values() if s.caught_up
        ):
            return _NEG_INF
        return state.newest - lateness + max(0.0, now - state.newest_at)

    def _advance(self, now: float, recovered: list[Recovered]) -> list[ShardReport]:
        state = self._state
        state.watermark = max(state.watermark, self._watermark(now))
        due = bool(state.corrections or state.uncounted) and (
            now - state.flushed_at >= TICK_S or len(state.uncounted) >= MAX_UNCOUNTED
        )
        if math.isinf(state.watermark):
            if not (recovered or due):
                return []
            report = ShardReport(self._state.shard, _NEG_INF, [], [], recovered)
            self._flush(report, now)
            return [report]
        before = state.closed_until
        report = self._close(state.watermark, state.watermark, recovered, now, due)
        if report.frontier == before and not (
            report.stuck or report.recovered or report.corrections or report.uncounted
        ):
            return []
        return [report]

    def _flush(self, report: ShardReport, now: float) -> None:
        """Move the pending corrections and uncounted events into ``report``."""
        state = self._state
        report.corrections = sorted(state.corrections.items())
        report.uncounted = state.uncounted
        state.corrections, state.uncounted, state.flushed_at = {}, [], now

    def _close(
        self,
        until: float,
        stuck_limit: float,
        recovered: list[Recovered],
        now: float,
        flush: bool = True,
    ) -> ShardReport:
        """Close every window ending at or before ``until``; trades stuck by ``stuck_limit``.

        The report carries the pending corrections when ``flush`` says so, and always when
        windows close: the merge step must have them before the horizon moves past them.
        """
        state, length = self._state, self._config.window_s
        trades, queues = state.trades, state.queues
        if state.closed_until is None:
            first = min(state.windows) if state.windows else window_start(until, length)
            state.closed_until = min(first, window_start(until, length))
        closed: list[tuple[float, WindowAcc]] = []
        stuck: list[Stuck] = []
        start = state.closed_until
        while start + length <= until:
            if start not in state.windows:  # skip a long stretch without data
                busy = bool(queues.parts or trades.stuck_now)
                resume = past_gap(start, state.windows, until, length, busy=busy)
                if resume != start:
                    stuck.extend(trades.due(min(resume, stuck_limit)))
                    start = resume
                    if start + length > until:
                        break
            end = start + length
            stuck.extend(trades.due(min(end, stuck_limit)))
            acc = state.windows.pop(start, None) or WindowAcc()
            for topic, count in state.future_unplaced.items():
                acc.future[topic] = acc.future.get(topic, 0) + count
            state.future_unplaced.clear()
            acc.queues = queues.gauges(end)
            acc.stuck = dict(trades.stuck_now)
            acc.untracked_trades = trades.take_evicted()
            acc.untracked_partitions = queues.take_evicted()
            closed.append((start, acc))
            start = end
        moved, state.closed_until = start != state.closed_until, start
        stuck.extend(trades.due(stuck_limit))
        trades.forget_ended(stuck_limit - REMEMBER_ENDED_S)
        if moved:  # windows closed: their ids are sealed, those past the horizon forgotten
            state.repeats.seal_before(start)
            state.repeats.forget_before(start - self._config.correction_s)
        report = ShardReport(self._state.shard, start, closed, stuck, recovered)
        if flush or (moved and (state.corrections or state.uncounted)):
            self._flush(report, now)
        return report
