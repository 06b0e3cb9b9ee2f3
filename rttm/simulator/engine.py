"""The simulated platform: trades through the stages of a scenario, with faults, in time order.

A discrete-event simulation. Each trade's path is drawn when it is created (Poisson
arrivals at ``rate`` trades/s) and its hops are queued by simulated time; popping them in
order moves queue offsets, so queue-metrics snapshots see consistent positions. Everything
random comes from one ``random.Random(seed)``, and event times count from ``start``: the
same seed and start give the same events, ids included.
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rttm.core.contracts import DlqEvent, ErrorEvent, LogEvent, Message, QueueMetrics, TradeEvent
from rttm.core.ids import uuid7
from rttm.core.registry import TOPICS
from rttm.simulator.scenario import Scenario, Stage

Emit = Callable[[float], Message]
_TOPIC_OF: dict[type[Message], str] = {spec.struct: spec.name for spec in TOPICS}
_METRICS_TOPIC = _TOPIC_OF[QueueMetrics]


@dataclass
class Tally:
    """What the simulation produced: per topic, per fault, per trade outcome."""

    topics: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    trades: Counter[str] = field(default_factory=Counter)


@dataclass(order=True)
class _Hop:
    at: float
    seq: int
    emit: Emit = field(compare=False)
    queue_moves: tuple[tuple[str, int, str], ...] = field(compare=False, default=())


class Simulation:
    """Iterate :meth:`events` for ``(simulated seconds, contract event)`` in time order.

    Args:
        scenario: the pipeline and its faults.
        seed: seeds every random draw.
        start: the wall-clock time of simulated second 0.
        rate: trades created per simulated second (Poisson arrivals).
        trades: stop creating after this many trades, or ``None``.
        duration: stop creating after this many simulated seconds, or ``None``.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        start: datetime,
        rate: float,
        trades: int | None = None,
        duration: float | None = None,
    ) -> None:
        if trades is None and duration is None:
            msg = "give trades or duration"
            raise ValueError(msg)
        self.scenario, self.start, self.rate = scenario, start, rate
        self.max_trades, self.duration = trades, duration
        self.rng = random.Random(seed)  # noqa: S311 - simulation, not security
        self.tally = Tally()
        self.created = 0
        self.clock = 0.0
        self._heap: list[_Hop] = []
        self._seq = 0
        self._next_trade = 0.0
        self._start_ms = int(start.timestamp() * 1000)
        self._produced: Counter[tuple[str, int]] = Counter()
        self._consumed: Counter[tuple[str, int]] = Counter()
        self._lag = {lag.queue: lag.growth_per_s for lag in scenario.lag}
        self._latency = {s.name: s.latency.mu_sigma for s in scenario.stages}
        self._stuck_after = scenario.stuck.after_stage if scenario.stuck else None
        self._next_metrics = scenario.metrics_interval_s

    # -- time and ids -------------------------------------------------------------------

    def _time(self, at: float) -> datetime:
        return self.start + timedelta(seconds=at)

    def _id(self, at: float) -> str:
        return uuid7(self._start_ms + int(at * 1000), self.rng)

    def _push(self, at: float, emit: Emit, moves: tuple[tuple[str, int, str], ...] = ()) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Hop(at, self._seq, emit, moves))

    def _creating(self) -> bool:
        if self.max_trades is not None and self.created >= self.max_trades:
            return False
        return self.duration is None or self._next_trade < self.duration

    # -- the main loop ------------------------------------------------------------------

    def events(self) -> Iterator[tuple[float, Message]]:
        """Every event of the run, in simulated-time order."""
        while True:
            creating = self._creating()
            next_hop = self._heap[0].at if self._heap else None
            if creating and (next_hop is None or self._next_trade <= next_hop):
                self._new_trade(self._next_trade)
                self._next_trade += self.rng.expovariate(self.rate)
                continue
            if next_hop is None:
                return
            if next_hop >= self._next_metrics:
                self.clock = self._next_metrics
                yield from self._snapshots(self._next_metrics)
                self._next_metrics += self.scenario.metrics_interval_s
                continue
            hop = heapq.heappop(self._heap)
            self.clock = hop.at
            for kind, part, queue in hop.queue_moves:
                (self._produced if kind == "p" else self._consumed)[(queue, part)] += 1
            event = hop.emit(hop.at)
            self.tally.topics[_TOPIC_OF[type(event)]] += 1
            yield hop.at, event

    def _snapshots(self, at: float) -> Iterator[tuple[float, Message]]:
        when = self._time(at)
        for service, queue in self.scenario.queues:
            lag = int(self._lag.get(queue, 0.0) * at)
            for part in range(self.scenario.queue_partitions):
                produced = self._produced[(queue, part)]
                consumed = max(self._consumed[(queue, part)] - lag, 0)
                self.tally.topics[_METRICS_TOPIC] += 1
                yield (
                    at,
                    QueueMetrics(
                        service_name=service,
                        topic_name=queue,
                        partition=part,
                        produced_offset=produced,
                        consumed_offset=consumed,
                        snapshot_time=when,
                        event_id=self._id(at),
                    ),
                )

    # -- one trade ----------------------------------------------------------------------

    def _new_trade(self, at: float) -> None:
        self.created += 1
        self.tally.trades["created"] += 1
        trade_id = f"T{self.created:09d}"
        part = zlib.crc32(trade_id.encode()) % self.scenario.queue_partitions
        rng = self.rng
        stuck = self._stuck_after is not None and rng.random() < self.scenario.stuck.rate  # type: ignore[union-attr]
        for index, stage in enumerate(self.scenario.stages):
            mu, sigma = self._latency[stage.name]
            at += rng.lognormvariate(mu, sigma)
            if stage.retry is not None and rng.random() < stage.retry.rate:
                self.tally.faults[f"{stage.name}:{stage.retry.error_type}"] += 1
                self._retry(stage, trade_id, part, at)
                at += stage.retry.backoff_ms / 1000 + rng.lognormvariate(mu, sigma)
            if stage.slow is not None and rng.random() < stage.slow.rate:
                self.tally.faults[f"{stage.name}:{stage.slow.log_category}"] += 1
                at += stage.slow.extra_ms / 1000
                self._slow(stage, trade_id, at)
            if stage.failure is not None and rng.random() < stage.failure.rate:
                self.tally.faults[f"{stage.name}:{stage.failure.event_type}"] += 1
                self.tally.trades["rejected"] += 1
                self._fail(stage, trade_id, part, at)
                return
            self._success(stage, trade_id, part, at)
            if stuck and stage.name == self._stuck_after:
                self.tally.faults[f"stuck after {stage.name}"] += 1
                self.tally.trades["stuck"] += 1
                return
            if index == len(self.scenario.stages) - 1:
                self.tally.trades["completed"] += 1

    def _trade_event(
        self,
        stage: Stage,
        trade_id: str,
        part: int,
        event_type: str,
        status: str,
        message: str | None,
        target: str | None,
    ) -> Emit:
        def emit(at: float) -> Message:
            source = stage.source_queue
            return TradeEvent(
                trade_id=trade_id,
                service_name=stage.service,
                event_type=event_type,
                event_status=status,
                source_queue=source,
                target_queue=target,
                topic_name=source,
                partition=part if source else None,
                offset=max(self._consumed[(source, part)] - 1, 0) if source else None,
                event_time=self._time(at),
                message=message,
                event_id=self._id(at),
            )

        return emit

    def _moves(self, stage: Stage, part: int, produce: bool) -> tuple[tuple[str, int, str], ...]:
        moves = []
        if stage.source_queue:
            moves.append(("c", part, stage.source_queue))
        if produce and stage.target_queue:
            moves.append(("p", part, stage.target_queue))
        return tuple(moves)

    def _success(self, stage: Stage, trade_id: str, part: int, at: float) -> None:
        emit = self._trade_event(
            stage, trade_id, part, stage.success, "SUCCESS", None, stage.target_queue
        )
        self._push(at, emit, self._moves(stage, part, produce=True))

    def _fail(self, stage: Stage, trade_id: str, part: int, at: float) -> None:
        failure = stage.failure
        assert failure is not None  # noqa: S101 - checked by the caller
        target = failure.dlq_topic
        emit = self._trade_event(
            stage, trade_id, part, failure.event_type, "FAILURE", failure.message, target
        )
        self._push(at, emit, self._moves(stage, part, produce=False))
        if failure.dlq_topic is not None:
            dlq_topic, reason = failure.dlq_topic, failure.dlq_reason or failure.message
            self._push(
                at,
                lambda t: DlqEvent(
                    trade_id=trade_id,
                    service_name=stage.service,
                    topic_name=dlq_topic,
                    reason=reason,
                    event_time=self._time(t),
                    event_id=self._id(t),
                ),
            )

    def _retry(self, stage: Stage, trade_id: str, part: int, at: float) -> None:
        retry = stage.retry
        assert retry is not None  # noqa: S101 - checked by the caller
        self._push(
            at,
            lambda t: ErrorEvent(
                trade_id=trade_id,
                service_name=stage.service,
                error_type=retry.error_type,
                error_message=retry.error_message,
                event_time=self._time(t),
                event_id=self._id(t),
            ),
        )
        self._push(
            at,
            self._trade_event(
                stage, trade_id, part, retry.event_type, "FAILURE", retry.error_message, None
            ),
        )

    def _slow(self, stage: Stage, trade_id: str, at: float) -> None:
        slow = stage.slow
        assert slow is not None  # noqa: S101 - checked by the caller
        self._push(
            at,
            lambda t: LogEvent(
                service_name=stage.service,
                log_level=slow.log_level,
                log_category=slow.log_category,
                trade_id=trade_id,
                message=slow.message,
                event_time=self._time(t),
                event_id=self._id(t),
            ),
        )
