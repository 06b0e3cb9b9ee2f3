"""The merge step: add up the shards' windows, derive the metrics, evaluate the alert rules.

A window is final once every shard's frontier has passed its end; windows are finalized in
order, and empty ones too while something is expected (a service that was active in the
last ``EXPECT_S``, an alert that is pending or firing), so "TPS dropped to zero" and
"condition cleared" are seen. Rules are evaluated at each window's end, on event time.

A finalized window's accumulator is kept for the correction horizon. A shard's correction
(late events of a window it closed) is added to it, and the window's count-type metrics
(:data:`CORRECTED`) are computed again and rewritten. Alert rules are not evaluated again:
alert history records what was known when each decision was made.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bytewax.operators import StatefulLogic

from rttm.alerts.engine import Alert, AlertEngine, Transition
from rttm.alerts.rules import Rule
from rttm.core import stopping
from rttm.core.metric_catalogue import EXPECT_S
from rttm.metrics import limits, stats
from rttm.metrics.events import Uncounted
from rttm.metrics.points import MAX_LABEL_CHARS, Labels, Point, bounded_value, labels_of
from rttm.metrics.reasons import ReasonBook
from rttm.metrics.shard import STATE_FORMAT, EngineConfig, ShardReport
from rttm.metrics.trades import Recovered, Stuck
from rttm.metrics.windows import WindowAcc, past_gap

QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
#: Metrics a correction rewrites whole: a window's stored points of these are replaced by
#: the ones computed again (a label set may have changed its name under the series cap).
CORRECTED = frozenset(
    {
        "events",
        "tps",
        "trades_started",
        "trades_completed",
        "trades_rejected",
        "hop_latency_ms",
        "e2e_latency_ms",
        "dlq_events",
        "dlq_rate",
        "dlq_ratio",
        "errors",
        "error_rate",
        "error_ratio",
        "log_events",
        "log_rate",
    }
)


@dataclass(slots=True)
class Kept:
    """A finalized window, kept for corrections: its counts, and who had a point of zero.

    ``tps`` is written for every expected service and ``dlq_rate`` for every DLQ topic
    known, silent or not: a correction writes them for the same ones again.
    """

    acc: WindowAcc
    services: tuple[str, ...] = ()
    dlq_topics: tuple[str, ...] = ()


@dataclass(slots=True)
class Correction:
    """A closed window's count-type points, computed again with late events."""

    window_start: datetime
    points: list[Point]


@dataclass(slots=True)
class MetricsOutput:
    """What the sink writes: points of finalized windows, alert transitions, stuck trades."""

    points: list[Point] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    recovered: list[Recovered] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    uncounted: list[Uncounted] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.points
            or self.transitions
            or self.stuck
            or self.recovered
            or self.corrections
            or self.uncounted
        )


@dataclass
class MergeState:
    """The merge step's state, pickled whole into Bytewax snapshots."""

    frontiers: dict[str, float] = field(default_factory=dict)
    pending: dict[float, WindowAcc] = field(default_factory=dict)
    finalized_until: float | None = None
    dlq: ReasonBook | None = None  # DLQ depth per topic and reason (made by MergeLogic)
    services_seen: dict[str, float] = field(default_factory=dict)  # service -> window end
    started_seen: float | None = None  # end of the last window with a started trade
    alerts: tuple[Alert, ...] = ()
    layout: tuple[float, int] = (0.0, 0)  # EngineConfig.layout() it was made with
    #: Finalized windows within the correction horizon: their accumulators (counts only).
    kept: dict[float, Kept] = field(default_factory=dict)
    correction_s: float = 0.0  # the horizon the windows were kept for
    #: No window before this is kept (the horizon was raised since): none is corrected.
    correction_floor: float = float("-inf")
    format: int = STATE_FORMAT


def bounded(labels: Labels) -> Labels:
    """Labels with every value cut to ``MAX_LABEL_CHARS`` (see :func:`bounded_value`)."""
    if all(len(value) <= MAX_LABEL_CHARS for _, value in labels):
        return labels
    return tuple((name, bounded_value(value)) for name, value in labels)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class _Points:
    """Collects the points of one window; at most ``cap`` label sets per metric stay named."""

    def __init__(self, start: float, end: float, cap: int) -> None:
        self.start, self.end, self.cap = _utc(start), _utc(end), cap
        self.by_metric: dict[str, list[Point]] = {}

    def add(self, metric: str, value: float, **labels: object) -> None:
        point = Point(metric, bounded(labels_of(labels)), self.start, self.end, float(value))
        found = self.by_metric.get(metric)
        if found is None:
            self.by_metric[metric] = [point]
        else:
            found.append(point)

    def points(self) -> list[Point]:
        """Every point, each metric folded to the cap, plus ``cardinality_exceeded`` points."""
        out: list[Point] = []
        exceeded: list[Point] = []
        for metric, found in self.by_metric.items():
            kept, folded = limits.fold(metric, found, self.cap)
            out.extend(kept)
            if folded is not None:
                stats.record_folded(metric, folded.dropped)
                exceeded.append(
                    Point(
                        "cardinality_exceeded",
                        (("label", folded.label), ("metric", metric)),
                        self.start,
                        self.end,
                        float(folded.dropped),
                    )
                )
        return out + exceeded


class MergeLogic(StatefulLogic[ShardReport, MetricsOutput, bytes]):
    """The single stateful step every shard reports to."""

    def __init__(self, config: EngineConfig, rules: Iterable[Rule], resume: bytes | None) -> None:
        self._config = config
        self._state: MergeState = (
            MergeState() if resume is None else pickle.loads(resume)  # noqa: S301 - own snapshot
        )
        if resume is not None:
            config.check_state(self._state, "merge")
            if config.correction_s > self._state.correction_s:  # only what was kept is
                self._state.correction_floor = max(  # there to correct
                    self._state.correction_floor,
                    (self._state.finalized_until or float("-inf")) - self._state.correction_s,
                )
        self._state.layout, self._state.correction_s = config.layout(), config.correction_s
        caps = config.limits
        if self._state.dlq is None:  # a new state: no DLQ seen yet
            self._state.dlq = ReasonBook(caps.dlq_reasons, caps.series)
        self._state.dlq.cap, self._state.dlq.topics = caps.dlq_reasons, caps.series
        self._engine = AlertEngine(rules, self._state.alerts, max_per_rule=caps.alerts_per_rule)

    def on_item(self, value: ShardReport) -> tuple[list[MetricsOutput], bool]:
        """Take a shard's report; finalize the windows every shard has now closed."""
        state = self._state
        state.frontiers[value.shard] = value.frontier
        for start, acc in value.windows:
            mine = state.pending.get(start)
            if mine is None:
                state.pending[start] = acc
            else:
                mine.merge(acc)
        out = MetricsOutput(
            stuck=list(value.stuck),
            recovered=list(value.recovered),
            uncounted=list(value.uncounted),
        )
        for start, delta in value.corrections:
            self._correct(start, delta, out)
        if len(state.frontiers) == self._config.shards:
            self._finalize(min(state.frontiers.values()), out)
        return ([out] if out else []), StatefulLogic.RETAIN

    def _correct(self, start: float, delta: WindowAcc, out: MetricsOutput) -> None:
        """Add late events to window ``start``: pending, or finalized and rewritten."""
        state = self._state
        done = state.finalized_until
        if done is None or start >= done:  # not final yet: the late events simply join
            mine = state.pending.get(start)
            if mine is None:
                state.pending[start] = delta
            else:
                mine.merge(delta)
            return
        if start < max(done - self._config.correction_s, state.correction_floor):
            return  # cannot happen: the shards' horizon is never older than this one's
        kept = state.kept.get(start)
        if kept is None:  # finalized without a point of its own (a stretch without data)
            kept = state.kept[start] = Kept(WindowAcc())
        acc = kept.acc
        acc.merge(delta)
        book = self._dlq()
        for (topic, reason), count in sorted(delta.dlq.items()):
            book.add(topic, reason, count)  # the depth from now on includes them
        window = _Points(start, start + self._config.window_s, self._config.limits.series)
        self._count_points(
            window.add, acc, self._dlq_names(acc), kept.services, dlq_topics=kept.dlq_topics
        )
        out.corrections.append(Correction(_utc(start), window.points()))
        stats.record_corrections(1)

    def on_eof(self) -> tuple[list[MetricsOutput], bool]:
        """End of a bounded run: every window still pending is final.

        Not so when the flow is only stopping: the pending windows stay open in the state
        (and its last snapshot), to be completed after the restart.
        """
        if stopping.requested():
            return [], StatefulLogic.RETAIN
        out = MetricsOutput()
        if self._state.pending:
            self._finalize(max(self._state.pending) + self._config.window_s, out)
        return ([out] if out else []), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        """The whole state, pickled."""
        self._state.alerts = self._engine.snapshot()
        return pickle.dumps(self._state, protocol=pickle.HIGHEST_PROTOCOL)

    def _expecting(self, end: float) -> bool:
        state = self._state
        recent = end - EXPECT_S
        return (
            bool(self._engine.active())
            or any(seen > recent for seen in state.services_seen.values())
            or (state.started_seen is not None and state.started_seen > recent)
        )

    def _finalize(self, limit: float, out: MetricsOutput) -> None:
        state, length = self._state, self._config.window_s
        if not state.pending and state.finalized_until is None:
            return
        start = state.finalized_until
        if start is None:
            start = min(state.pending)
        finalized = stuck_open = 0
        while start + length <= limit:
            if start not in state.pending:
                busy = self._expecting(start + length)
                resume = past_gap(start, state.pending, limit, length, busy=busy)
                if resume != start:
                    start = resume  # nothing to say about the stretch in between
                    if start + length > limit:
                        break
            acc = state.pending.pop(start, None) or WindowAcc()
            points = self._points(start, start + length, acc)
            out.points.extend(points)
            out.transitions.extend(self._engine.evaluate(points, _utc(start + length)))
            finalized += 1
            stuck_open = sum(acc.stuck.values())
            start += length
        state.finalized_until = start
        if finalized:  # the horizon moved: windows older than it are corrected no more
            horizon = start - self._config.correction_s
            for old in [old for old in state.kept if old < horizon]:
                del state.kept[old]
            firing = sum(1 for alert in self._engine.active() if alert.state == "firing")
            stats.record_finalized(finalized, start, stuck_open, firing)

    def _keep(self, start: float, acc: WindowAcc, services: list[str], topics: list[str]) -> None:
        """Keep a finalized window's counts for corrections (its gauges are final)."""
        if self._config.correction_s <= 0:
            return
        acc.queues, acc.stuck = [], {}
        self._state.kept[start] = Kept(acc, tuple(services), tuple(topics))

    def _points(self, start: float, end: float, acc: WindowAcc) -> list[Point]:
        """Every point of a window being finalized (updates who is expected, DLQ depth)."""
        window = _Points(start, end, self._config.limits.series)
        add = window.add
        trades = self._expect(end, acc)
        named = self._book_dlq(acc)
        services, topics = sorted(self._state.services_seen), sorted(self._dlq().depth)
        self._count_points(add, acc, named, services, trades=trades, dlq_topics=topics)
        self._depth_points(add, named)
        self._queue_points(acc, add)
        self._state_points(add, acc)
        self._keep(start, acc, services, topics)  # last: it drops the gauges
        return window.points()

    def _dlq(self) -> ReasonBook:
        """The DLQ book (made in ``__init__``)."""
        book = self._state.dlq
        assert book is not None  # noqa: S101 - made in __init__
        return book

    def _expect(self, end: float, acc: WindowAcc) -> bool:
        """Note who was active in the window; whether trades are expected at its end.

        A service active within ``EXPECT_S`` is expected (its silence is a zero), up to the
        series cap; trades are expected while some started within ``EXPECT_S``.
        """
        state = self._state
        expected, room = state.services_seen, self._config.limits.series
        for service, _ in sorted(acc.events):
            if service in expected or len(expected) < room:  # beyond the cap: not expected
                expected[service] = end
        for service, seen in list(expected.items()):
            if seen <= end - EXPECT_S:
                del expected[service]  # silent long enough: no longer expected
        if acc.started:
            state.started_seen = end
        return bool(
            acc.started
            or acc.completed
            or acc.rejected
            or (state.started_seen is not None and state.started_seen > end - EXPECT_S)
        )

    def _book_dlq(self, acc: WindowAcc) -> dict[tuple[str, str], int]:
        """Add the window's DLQ events to the book; return them per the names it gave."""
        book = self._dlq()
        named: dict[tuple[str, str], int] = {}
        for (topic, reason), count in sorted(acc.dlq.items(), key=lambda kv: (-kv[1], kv[0])):
            key = book.add(topic, reason, count)  # most frequent first: they get the names
            named[key] = named.get(key, 0) + count
        return named

    def _depth_points(self, add: Callable[..., None], named: dict[tuple[str, str], int]) -> None:
        """DLQ depth per topic, and per reason for the reasons the window had."""
        book = self._dlq()
        for topic, reason in sorted(named):
            add("dlq_depth_by_reason", book.depth[topic][reason], topic=topic, reason=reason)
        for topic, total in sorted(book.by_topic().items()):
            add("dlq_depth", total, topic=topic)

    @staticmethod
    def _state_points(add: Callable[..., None], acc: WindowAcc) -> None:
        """Stuck trades at the window's end, and the engine's own bookkeeping."""
        for (stage, service), count in sorted(acc.stuck.items()):
            add("stuck_trades", count, stage=stage, service=service)
        for metric, counts in (
            ("late_events", acc.late),
            ("corrected_events", acc.corrected),
            ("repeated_events", acc.repeated),
            ("invalid_messages", acc.invalid),
            ("future_events", acc.future),
        ):
            for topic, count in sorted(counts.items()):
                add(metric, count, topic=topic)
        if acc.untracked_trades:
            add("trades_untracked", acc.untracked_trades)
        if acc.untracked_partitions:
            add("partitions_untracked", acc.untracked_partitions)

    def _dlq_names(self, acc: WindowAcc) -> dict[tuple[str, str], int]:
        """A window's DLQ events per the labels the book names them by now (no counting)."""
        book = self._dlq()
        named: dict[tuple[str, str], int] = {}
        for (topic, reason), count in acc.dlq.items():
            reasons = book.depth.get(topic)
            if reasons is None:
                topic, reasons = limits.OTHER, book.depth.get(limits.OTHER, {})
            key = (topic, reason if reason in reasons else limits.OTHER)
            named[key] = named.get(key, 0) + count
        return named

    def _count_points(
        self,
        add: Callable[..., None],
        acc: WindowAcc,
        named_dlq: dict[tuple[str, str], int],
        tps_services: Iterable[str],
        *,
        trades: bool = True,
        dlq_topics: Iterable[str] = (),
    ) -> None:
        """A window's count-type points (:data:`CORRECTED`) from ``acc``.

        ``tps`` for ``tps_services`` and ``dlq_rate`` for ``dlq_topics`` as well as for
        those with events: the expected ones, zero when silent.
        """
        length = self._config.window_s
        per_service: dict[str, int] = {}
        for (service, event_type), count in sorted(acc.events.items()):
            add("events", count, service=service, event_type=event_type)
            per_service[service] = per_service.get(service, 0) + count
        for service in sorted({*tps_services, *per_service}):
            add("tps", per_service.get(service, 0) / length, service=service)
        if trades:
            add("trades_started", acc.started)
            add("trades_completed", acc.completed)
            add("trades_rejected", acc.rejected)
        for (origin, target), sketch in sorted(acc.hops.items()):
            for name, q in QUANTILES:
                add(
                    "hop_latency_ms",
                    sketch.quantile(q),
                    from_stage=origin,
                    to_stage=target,
                    quantile=name,
                )
        if acc.e2e.count:
            for name, q in QUANTILES:
                add("e2e_latency_ms", acc.e2e.quantile(q), quantile=name)
        per_topic: dict[str, int] = {}
        for (topic, reason), count in sorted(named_dlq.items()):
            add("dlq_events", count, topic=topic, reason=reason)
            per_topic[topic] = per_topic.get(topic, 0) + count
        for topic in sorted({*dlq_topics, *per_topic}):
            add("dlq_rate", per_topic.get(topic, 0) / length, topic=topic)
        if acc.started:
            add("dlq_ratio", sum(per_topic.values()) / acc.started)
        errors: dict[str, int] = {}
        for (service, error_type), count in sorted(acc.errors.items()):
            add("errors", count, service=service, error_type=error_type)
            errors[service] = errors.get(service, 0) + count
        for service, count in sorted(errors.items()):
            add("error_rate", count / length, service=service)
            if per_service.get(service):
                add("error_ratio", count / per_service[service], service=service)
        levels: dict[tuple[str, str], int] = {}
        for (service, level, category), count in sorted(acc.logs.items()):
            add("log_events", count, service=service, level=level, category=category)
            levels[(service, level)] = levels.get((service, level), 0) + count
        for (service, level), count in sorted(levels.items()):
            add("log_rate", count / length, service=service, level=level)

    def _queue_points(self, acc: WindowAcc, add: Callable[..., None]) -> None:
        pipeline = self._config.pipeline
        groups: dict[tuple[str, str], tuple[int, float]] = {}
        for gauge in sorted(acc.queues, key=lambda g: (g.service, g.topic, g.partition)):
            labels = {"service": gauge.service, "topic": gauge.topic, "partition": gauge.partition}
            add("queue_lag", gauge.lag, **labels)
            add("queue_lag_seconds", gauge.lag_seconds, **labels)
            if gauge.consume_rate is not None:
                add("consume_rate", gauge.consume_rate, **labels)
            status, behind = groups.get((gauge.service, gauge.topic), (0, 0.0))
            groups[(gauge.service, gauge.topic)] = (
                max(status, gauge.status),
                max(behind, gauge.lag_seconds),
            )
        for (service, topic), (status, behind) in sorted(groups.items()):
            add("consumer_status", status, service=service, topic=topic)
            add(
                "time_to_data_loss_seconds",
                pipeline.retention_of(topic) - behind,
                service=service,
                topic=topic,
            )
