"""``rttm metrics verify``: recount settled windows from the event tables, compare the metrics.

The metrics engine counts events as they stream by; the ingestion stores the same events in
PostgreSQL. Once no event can change a window any more, the two must agree, and this module
checks that they do: it recounts every such window from the tables (one ``GROUP BY`` query
per table over the whole range) and compares the recount with what ``rttm_metrics`` holds.

Which windows. The reference is the end of the newest window in ``rttm_metrics`` (the
engine's progress). A window ``[s, s + W)`` is *settled* when ``s + W <= reference -
lateness - correction``: the engine closed it, and the correction horizon within which a
late event still corrects a closed window has passed it too. Settled windows starting at
or after ``settled end - since`` are checked.

What is recounted (window of an event: ``floor(epoch(event_time) / W) * W``):

* counts, every point exact: ``events``, ``trades_started``/``_completed``/``_rejected``
  (per event of the pipeline's first, completed and rejected types; a missing point is 0),
  ``dlq_events`` (reasons grouped by :func:`~rttm.metrics.reasons.reason_group`), ``errors``
  and ``log_events`` (levels of :data:`~rttm.metrics.shard.COUNTED_LEVELS` only). Past a
  cap the engine folds label sets into points whose values are ``__other__``; those points
  together must equal the recount of every label set no named point covers;
* derived values, for stored points without ``__other__`` (relative tolerance
  ``REL_TOL``): ``tps``, ``error_rate``, ``error_ratio``, ``log_rate``, ``dlq_rate`` and
  ``dlq_ratio``.

Events the engine read but deliberately did not count (``rttm_metrics_uncounted``: beyond
the correction horizon, or dated in the future) are left out of the recount, and counted.

Not recomputable: ``hop_latency_ms`` and ``e2e_latency_ms`` are quantiles of a mergeable
sketch with 1 % relative accuracy, over the engine's per-trade stage entries, which the
tables do not hold. They are only checked to be finite, non-negative and ordered (p50 <=
p95 <= p99), and ``e2e_latency_ms`` to appear only in windows where trades completed.
Gauges (a moment's state) and the engine's own bookkeeping counters are not checked.

Differences that are not the engine's fault: the ingestion being behind the engine (rows
not stored yet: they go away when it catches up), and repeats the engine no longer
recognised (past ``RTTM_METRICS_MAX_IDS`` it forgets event ids early, see
:mod:`rttm.metrics.repeats`; one row, two events counted).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from rttm.core import config
from rttm.core.contracts import DlqEvent, ErrorEvent, LogEvent, Message, TradeEvent
from rttm.core.db.connect import Conn, connect
from rttm.core.errors import RttmError
from rttm.core.metric_catalogue import METRICS, QUANTILES, Kind, named
from rttm.core.registry import TOPICS, TopicSpec
from rttm.metrics.limits import OTHER
from rttm.metrics.pipeline import Pipeline
from rttm.metrics.points import Labels, bounded_value, labels_of
from rttm.metrics.reasons import reason_group
from rttm.metrics.settings import engine_config
from rttm.metrics.shard import COUNTED_LEVELS, EngineConfig
from rttm.views.common import WORK_MEM, iso, query_failed

#: The events the metrics engine noted as not counted (migration 0008).
UNCOUNTED_TABLE = "rttm_metrics_uncounted"
#: A recount reads up to ``--since`` of every event table: far longer than a view's 5 s.
STATEMENT_TIMEOUT = "10min"
#: Relative tolerance of a derived value (a rate or a ratio of two counts).
REL_TOL = 1e-9
DEFAULT_SINCE = "1h"


def _named(*names: str) -> tuple[str, ...]:
    """Metric names, each checked against the catalogue (on import)."""
    return tuple(map(named, names))


#: Count metrics: every point must equal the recount.
COUNTS = _named(
    "events",
    "trades_started",
    "trades_completed",
    "trades_rejected",
    "dlq_events",
    "errors",
    "log_events",
)
#: The trade outcomes, one unlabelled point each per window (a missing point means 0).
OUTCOMES = COUNTS[1:4]
#: Derived metrics (rates and ratios of the counts) and the label names their points carry.
DERIVED: dict[str, tuple[str, ...]] = {
    name: tuple(sorted(METRICS[name].labels))
    for name in ("tps", "error_rate", "error_ratio", "log_rate", "dlq_rate", "dlq_ratio")
}
#: Latency quantiles: checked for sanity only (see the module docstring).
LATENCIES = tuple(name for name, metric in METRICS.items() if metric.kind is Kind.LATENCY)
#: Why the latencies are not recomputed: said in the output.
NOT_RECOMPUTED = (
    "quantiles of a sketch with 1% relative accuracy over the engine's per-trade stage "
    "entries, which the tables do not hold; checked only: finite, >= 0, p50 <= p95 <= p99, "
    "and e2e only in windows where trades completed"
)
#: What is not checked at all, and why: said in the output.
NOT_CHECKED: dict[str, tuple[str, ...]] = {
    "gauges of a moment": _named(
        "queue_lag",
        "queue_lag_seconds",
        "consume_rate",
        "consumer_status",
        "dlq_depth",
        "dlq_depth_by_reason",
        "stuck_trades",
        "time_to_data_loss_seconds",
    ),
    "the engine's own bookkeeping": _named(
        "late_events",
        "corrected_events",
        "repeated_events",
        "invalid_messages",
        "future_events",
        "trades_untracked",
        "partitions_untracked",
        "cardinality_exceeded",
    ),
}

MISMATCH, MISSING, UNEXPECTED, INVALID = "mismatch", "missing", "unexpected", "invalid"

#: window start (epoch seconds) -> metric -> labels -> stored value
Windows = dict[int, dict[str, dict[Labels, float]]]
#: window start (epoch seconds) -> metric -> labels -> recounted events
Counts = dict[int, dict[str, dict[Labels, int]]]


@dataclass(frozen=True)
class Span:
    """The windows checked, ``[first, end)`` in epoch seconds, and what they derive from."""

    reference: float  # end of the newest window in rttm_metrics
    settled_end: float  # reference - lateness - correction
    first: int
    end: int
    window_s: int

    @property
    def windows(self) -> int:
        """How many windows the span holds."""
        return max(self.end - self.first, 0) // self.window_s


@dataclass(frozen=True, slots=True)
class Difference:
    """One disagreement between ``rttm_metrics`` and the recount.

    ``kind``: ``mismatch`` (both have a value, not the same), ``missing`` (the recount has
    events, the engine no point), ``unexpected`` (a point the recount does not back),
    ``invalid`` (a latency point that cannot be right whatever the events); ``note`` says
    more where the numbers do not. ``points`` > 1: the sum of that many ``__other__`` points.
    """

    window_start: int
    metric: str
    labels: Labels
    stored: float | None
    recounted: float | None
    kind: str
    note: str = ""
    points: int = 1

    @property
    def difference(self) -> float | None:
        """Stored minus recounted (a missing side counts as 0); None for an invalid point."""
        if self.kind == INVALID:
            return None
        return (self.stored or 0.0) - (self.recounted or 0.0)

    def as_json(self) -> dict[str, Any]:
        """The difference as a JSON object."""
        return {
            "window_start": iso_of(self.window_start),
            "metric": self.metric,
            "labels": dict(self.labels),
            "stored": _finite(self.stored),
            "recounted": _finite(self.recounted),
            "difference": _finite(self.difference),
            "kind": self.kind,
            "note": self.note,
            "points": self.points,
        }


@dataclass
class Comparison:
    """What comparing windows found: points compared and the differences, in order."""

    compared: int = 0
    differences: list[Difference] = field(default_factory=list)

    def add(self, other: Comparison) -> None:
        """Take in another comparison's findings."""
        self.compared += other.compared
        self.differences.extend(other.differences)


@dataclass(frozen=True)
class Report:
    """The outcome of one verification (``span`` None: ``rttm_metrics`` is empty)."""

    span: Span | None
    window_s: int
    lateness_s: float
    correction_s: float
    since_s: float
    compared: int = 0
    left_out: Mapping[str, int] = field(default_factory=dict)  # topic -> rows
    differences: tuple[Difference, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the metrics agree with the tables."""
        return not self.differences

    def as_json(self) -> dict[str, Any]:
        """The whole report as a JSON object (``rttm metrics verify --json``)."""
        span = self.span
        return {
            "reference": None if span is None else iso_of(span.reference),
            "settled_end": None if span is None else iso_of(span.settled_end),
            "from": None if span is None else iso_of(span.first),
            "to": None if span is None else iso_of(span.end),
            "windows": 0 if span is None else span.windows,
            "settings": {
                "window_seconds": self.window_s,
                "lateness_seconds": self.lateness_s,
                "correction_seconds": self.correction_s,
                "since_seconds": self.since_s,
            },
            "points_compared": self.compared,
            "left_out": sum(self.left_out.values()),
            "left_out_by_topic": dict(self.left_out),
            "differences": [d.as_json() for d in self.differences],
            "not_recomputed": {"metrics": list(LATENCIES), "why": NOT_RECOMPUTED},
            "not_checked": [
                {"metrics": list(metrics), "why": why} for why, metrics in NOT_CHECKED.items()
            ],
        }


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def iso_of(seconds: float) -> str:
    """Epoch seconds as RFC 3339 in UTC with a Z (``2026-03-01T12:00:00Z``)."""
    return str(iso(_utc(seconds)))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _has_other(labels: Labels) -> bool:
    return any(value == OTHER for _, value in labels)


def _labels(**values: str) -> Labels:
    """Labels as the engine stores them: every value cut by :func:`bounded_value`."""
    return tuple(sorted((name, bounded_value(value)) for name, value in values.items()))


# -- which windows ------------------------------------------------------------------------


def settled_span(
    reference: float, window_s: int, lateness_s: float, correction_s: float, since_s: float
) -> Span:
    """The settled windows of the last ``since_s`` before the settled end (see the module)."""
    settled_end = reference - lateness_s - correction_s
    end = math.floor(settled_end / window_s) * window_s
    first = math.ceil((settled_end - since_s) / window_s) * window_s
    return Span(reference, settled_end, min(first, end), end, window_s)


# -- comparing ----------------------------------------------------------------------------


def compare_counts(
    start: int, metric: str, stored: Mapping[Labels, float], recounted: Mapping[Labels, int]
) -> Comparison:
    """One count metric of one window, fold-aware.

    A stored point without ``__other__`` must equal the recount of its labels (none: 0).
    The ``__other__`` points together must equal the recount of every label set no named
    point covers; without one, each such label set with events is ``missing``.
    """
    out = Comparison()
    named = {labels: v for labels, v in stored.items() if not _has_other(labels)}
    others = sorted((labels, v) for labels, v in stored.items() if _has_other(labels))
    for labels, value in sorted(named.items()):
        out.compared += 1
        count = recounted.get(labels, 0)
        if value != count:
            kind = UNEXPECTED if count == 0 else MISMATCH
            out.differences.append(Difference(start, metric, labels, value, count, kind))
    rest = {labels: n for labels, n in recounted.items() if labels not in named and n}
    if others:
        out.compared += 1
        total, uncovered = sum(v for _, v in others), sum(rest.values())
        if total != uncovered:
            kind = UNEXPECTED if uncovered == 0 else MISMATCH
            what = f"the {len(others)} __other__ points" if len(others) > 1 else "__other__"
            note = f"{what} vs the label sets no named point has"
            shown = max(others, key=lambda item: sum(v == OTHER for _, v in item[0]))[0]
            out.differences.append(
                Difference(start, metric, shown, total, uncovered, kind, note, len(others))
            )
        return out
    for labels, count in sorted(rest.items()):
        out.compared += 1
        out.differences.append(Difference(start, metric, labels, None, count, MISSING))
    return out


@dataclass
class _Bases:
    """One window's recounted totals that the derived metrics divide."""

    events: dict[str, int] = field(default_factory=dict)  # service
    errors: dict[str, int] = field(default_factory=dict)  # service
    logs: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, level)
    dlq: dict[str, int] = field(default_factory=dict)  # topic
    started: int = 0

    @classmethod
    def of(cls, counts: Mapping[str, Mapping[Labels, int]]) -> _Bases:
        bases = cls(started=sum(counts.get("trades_started", {}).values()))
        for metric, into, name in (
            ("events", bases.events, "service"),
            ("errors", bases.errors, "service"),
            ("dlq_events", bases.dlq, "topic"),
        ):
            for labels, n in counts.get(metric, {}).items():
                key = dict(labels)[name]
                into[key] = into.get(key, 0) + n
        for labels, n in counts.get("log_events", {}).items():
            found = dict(labels)
            pair = (found["service"], found["level"])
            bases.logs[pair] = bases.logs.get(pair, 0) + n
        return bases

    def expected(self, metric: str, labels: Mapping[str, str], window_s: int) -> float | None:
        """The value the engine derives; None where it stores no point."""
        if metric == "tps":
            return self.events.get(labels["service"], 0) / window_s
        if metric == "error_rate":
            return self.errors.get(labels["service"], 0) / window_s
        if metric == "error_ratio":
            events = self.events.get(labels["service"], 0)
            return self.errors.get(labels["service"], 0) / events if events else None
        if metric == "log_rate":
            return self.logs.get((labels["service"], labels["level"]), 0) / window_s
        if metric == "dlq_rate":
            return self.dlq.get(labels["topic"], 0) / window_s
        if metric == "dlq_ratio":
            return sum(self.dlq.values()) / self.started if self.started else None
        msg = f"not a derived metric: {metric}"
        raise ValueError(msg)


def compare_derived(
    start: int,
    stored: Mapping[str, Mapping[Labels, float]],
    counts: Mapping[str, Mapping[Labels, int]],
    window_s: int,
) -> Comparison:
    """The derived points stored for one window, against values from the recount.

    Points with an ``__other__`` label are skipped (a folded ratio is the worst of its
    points, not recomputable); a derived point the engine did not store is not a difference.
    """
    out = Comparison()
    bases = _Bases.of(counts)
    for metric, names in DERIVED.items():
        for labels, value in sorted(stored.get(metric, {}).items()):
            if _has_other(labels):
                continue
            out.compared += 1
            found = dict(labels)
            if sorted(found) != sorted(names):
                note = f"labels {', '.join(sorted(found)) or '(none)'}, expected " + (
                    ", ".join(names) or "none"
                )
                out.differences.append(
                    Difference(start, metric, labels, value, None, UNEXPECTED, note)
                )
                continue
            expected = bases.expected(metric, found, window_s)
            if expected is None:
                note = "the engine stores none when the denominator is 0"
                out.differences.append(
                    Difference(start, metric, labels, value, None, UNEXPECTED, note)
                )
            elif not math.isclose(value, expected, rel_tol=REL_TOL, abs_tol=1e-12):
                out.differences.append(Difference(start, metric, labels, value, expected, MISMATCH))
    return out


def check_latencies(
    start: int, stored: Mapping[str, Mapping[Labels, float]], completed: int
) -> Comparison:
    """Latency quantiles of one window: finite, >= 0, ordered; e2e only if trades completed.

    The order is not checked on ``__other__`` points: a fold keeps each quantile's largest
    points, so a folded p50 may come from a series whose p99 stayed named.
    """
    out = Comparison()
    for metric in LATENCIES:
        groups: dict[Labels, dict[str, float]] = {}
        for labels, value in stored.get(metric, {}).items():
            rest = tuple((k, v) for k, v in labels if k != "quantile")
            groups.setdefault(rest, {})[dict(labels).get("quantile", "")] = value
        for labels, values in sorted(groups.items()):
            out.compared += 1
            out.differences.extend(_latency_problems(start, metric, labels, values))
            if metric == "e2e_latency_ms" and completed == 0:
                note = "end-to-end latency in a window where no trade completed"
                out.differences.append(
                    Difference(start, metric, labels, max(values.values()), 0, UNEXPECTED, note)
                )
    return out


def _latency_problems(
    start: int, metric: str, labels: Labels, values: Mapping[str, float]
) -> Iterable[Difference]:
    for name, value in sorted(values.items()):
        if name not in QUANTILES:
            yield Difference(
                start, metric, labels, value, None, INVALID, f"unknown quantile {name!r}"
            )
        elif not math.isfinite(value) or value < 0:
            yield Difference(start, metric, labels, value, None, INVALID, f"{name} is {value}")
    if _has_other(labels):
        return
    present = [(name, values[name]) for name in QUANTILES if name in values]
    if any(a > b for (_, a), (_, b) in itertools.pairwise(present)):
        shown = ", ".join(f"{name} {value:g}" for name, value in present)
        yield Difference(
            start, metric, labels, present[0][1], None, INVALID, f"not ordered: {shown}"
        )


def compare(stored: Windows, recounted: Counts, window_s: int) -> Comparison:
    """Every window of ``stored`` and ``recounted``: counts, derived values, latencies."""
    out = Comparison()
    for start in sorted(stored.keys() | recounted.keys()):
        points, counts = stored.get(start, {}), recounted.get(start, {})
        for metric in COUNTS:
            out.add(compare_counts(start, metric, points.get(metric, {}), counts.get(metric, {})))
        out.add(compare_derived(start, points, counts, window_s))
        completed = sum(counts.get("trades_completed", {}).values())
        out.add(check_latencies(start, points, completed))
    return out


# -- recounting ---------------------------------------------------------------------------


def _bump(windows: Counts, start: int, metric: str, labels: Labels, count: int) -> None:
    found = windows.setdefault(start, {}).setdefault(metric, {})
    found[labels] = found.get(labels, 0) + count


def add_trades(windows: Counts, rows: Iterable[tuple[Any, ...]], pipeline: Pipeline) -> None:
    """Rows (window, service, event_type, count): ``events`` and the trade outcomes."""
    outcomes = (
        ("trades_started", pipeline.first_events),
        ("trades_completed", pipeline.completed),
        ("trades_rejected", pipeline.rejected),
    )
    for start, service, event_type, count in rows:
        _bump(windows, start, "events", _labels(service=service, event_type=event_type), count)
        for metric, types in outcomes:
            if event_type in types:
                _bump(windows, start, metric, (), count)


def add_dlq(windows: Counts, rows: Iterable[tuple[Any, ...]]) -> None:
    """Rows (window, topic_name, reason, count): ``dlq_events`` by grouped reason."""
    for start, topic, reason, count in rows:
        labels = _labels(topic=topic, reason=reason_group(reason))
        _bump(windows, start, "dlq_events", labels, count)


def add_errors(windows: Counts, rows: Iterable[tuple[Any, ...]]) -> None:
    """Rows (window, service, error_type, count): ``errors``."""
    for start, service, error_type, count in rows:
        _bump(windows, start, "errors", _labels(service=service, error_type=error_type), count)


def add_logs(windows: Counts, rows: Iterable[tuple[Any, ...]]) -> None:
    """Rows (window, service, level, category, count): ``log_events`` of counted levels.

    The level is tested here, as the engine does (Python's ``upper``, not the server's).
    """
    for start, service, level, category, count in rows:
        if level.upper() in COUNTED_LEVELS:
            labels = _labels(service=service, level=level, category=category)
            _bump(windows, start, "log_events", labels, count)


def _spec(struct: type[Message]) -> TopicSpec:
    (spec,) = (spec for spec in TOPICS if spec.struct is struct)
    return spec


#: Each counted table (by its contract) and the columns it is grouped by, after the window.
_FAMILIES: tuple[tuple[type[Message], tuple[str, ...]], ...] = (
    (TradeEvent, ("service_name", "event_type")),
    (DlqEvent, ("topic_name", "reason")),
    (ErrorEvent, ("service_name", "error_type")),
    (LogEvent, ("service_name", "log_level", "log_category")),
)


def _family_query(spec: TopicSpec, columns: tuple[str, ...]) -> sql.Composed:
    """Rows per window and label columns of one table: counted, and left out as uncounted.

    The join on ``rttm_metrics_uncounted``'s key is an anti-join (``u.topic IS NULL``:
    nothing noted, the row counts) that also counts the rows it leaves out, in one scan.
    """
    missing = [name for name in columns if name not in spec.columns]
    if missing:  # a contract change must show here, not as a silent miscount
        msg = f"{spec.table} has no column {', '.join(missing)}"
        raise RttmError(msg)
    grouped = sql.SQL(", ").join(sql.Identifier("t", name) for name in columns)
    return sql.SQL(
        "SELECT floor(extract(epoch FROM t.event_time) / %(w)s)::bigint * %(w)s AS win, {cols},"
        " count(*) FILTER (WHERE u.topic IS NULL), count(u.topic)"
        " FROM {table} AS t LEFT JOIN {uncounted} AS u"
        " ON u.topic = %(topic)s AND u.kafka_partition = t.kafka_partition"
        " AND u.kafka_offset = t.kafka_offset AND u.event_time = t.event_time"
        " AND u.event_time >= %(first)s AND u.event_time < %(end)s"
        " WHERE t.event_time >= %(first)s AND t.event_time < %(end)s"
        " GROUP BY win, {cols}"
    ).format(
        cols=grouped, table=sql.Identifier(spec.table), uncounted=sql.Identifier(UNCOUNTED_TABLE)
    )


def recount(conn: Conn, span: Span, pipeline: Pipeline) -> tuple[Counts, dict[str, int]]:
    """The span's windows recounted from the event tables; rows left out per topic."""
    counts: Counts = {}
    left_out: dict[str, int] = {}
    adders: dict[type[Message], Callable[[Counts, list[tuple[Any, ...]]], None]] = {
        TradeEvent: lambda into, rows: add_trades(into, rows, pipeline),
        DlqEvent: add_dlq,
        ErrorEvent: add_errors,
        LogEvent: add_logs,
    }
    params = {"w": span.window_s, "first": _utc(span.first), "end": _utc(span.end)}
    for struct, columns in _FAMILIES:
        spec = _spec(struct)
        counted: list[tuple[Any, ...]] = []
        for row in conn.execute(_family_query(spec, columns), {**params, "topic": spec.name}):
            *labels, count, skipped = row
            if skipped:
                left_out[spec.name] = left_out.get(spec.name, 0) + skipped
            if count:
                counted.append((int(labels[0]), *labels[1:], count))
        adders[struct](counts, counted)
    return counts, left_out


def reference(conn: Conn) -> tuple[datetime, datetime] | None:
    """Start and end of the newest window in ``rttm_metrics`` (None: it is empty)."""
    row = conn.execute(
        "SELECT window_start, window_end FROM rttm_metrics"
        " ORDER BY window_start DESC, window_end DESC LIMIT 1"
    ).fetchone()
    return None if row is None else (row[0], row[1])


def stored_points(conn: Conn, span: Span) -> Windows:
    """The points of the checked metrics in the span's windows.

    Raises:
        RttmError: a point whose window is not one of ``span.window_s`` seconds (the
            engine ran with another window length than the one given here).
    """
    metrics = [*COUNTS, *DERIVED, *LATENCIES]
    rows = conn.execute(
        "SELECT metric, window_start, window_end, labels, value FROM rttm_metrics"
        " WHERE metric = ANY(%s) AND window_start >= %s AND window_start < %s",
        (metrics, _utc(span.first), _utc(span.end)),
    )
    windows: Windows = {}
    for metric, start, end, labels, value in rows:
        _check_window(start, end, span.window_s)
        found = windows.setdefault(int(start.timestamp()), {}).setdefault(metric, {})
        found[labels_of(labels)] = float(value)
    return windows


def _check_window(start: datetime, end: datetime, window_s: int) -> None:
    seconds = start.timestamp()
    if (end - start).total_seconds() != window_s or seconds % window_s:
        msg = (
            f"rttm_metrics holds the window {iso(start)} to {iso(end)}, not one of {window_s}s:"
            " run verify with the engine's RTTM_METRICS_WINDOW"
        )
        raise RttmError(msg)


def verify(conn: Conn, engine: EngineConfig, since_s: float) -> Report:
    """Recount the settled windows of the last ``since_s`` and compare (see the module)."""
    window_s = int(engine.window_s)

    def report(
        span: Span | None,
        found: Comparison | None = None,
        left_out: Mapping[str, int] | None = None,
    ) -> Report:
        found = found or Comparison()
        return Report(
            span,
            window_s,
            engine.lateness_s,
            engine.correction_s,
            since_s,
            found.compared,
            left_out or {},
            tuple(found.differences),
        )

    newest = reference(conn)
    if newest is None:
        return report(None)
    _check_window(*newest, window_s)
    span = settled_span(
        newest[1].timestamp(), window_s, engine.lateness_s, engine.correction_s, since_s
    )
    if not span.windows:
        return report(span)
    recounted, left_out = recount(conn, span, engine.pipeline)
    return report(span, compare(stored_points(conn, span), recounted, window_s), left_out)


def run(env: Mapping[str, str], since_s: float) -> Report:
    """Verify the database of ``env`` with the engine settings of ``env``.

    One read-only, repeatable-read transaction: the reference, the points and the tables
    are read from the same snapshot, while the flows go on writing.

    Raises:
        RttmError: bad settings, an unreachable database or a failed query, in one line.
    """
    engine = engine_config(env)
    url = config.database_url(env)
    with connect(url, statement_timeout=STATEMENT_TIMEOUT, work_mem=WORK_MEM) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            return verify(conn, engine, since_s)
        except psycopg.Error as exc:
            raise query_failed(url, exc) from None
