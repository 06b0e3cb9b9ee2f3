"""Every metric the metrics engine computes: its labels, kind, help text and Prometheus form.

One catalogue, below the engine, the alert rules and ``/metrics``, so that a metric's
labels, its meaning and how Prometheus sees it are written once:

* the alert rules accept exactly these metrics and labels (:mod:`rttm.alerts.rules`);
* ``rttm serve``'s ``/metrics`` exposes them under Prometheus' conventions
  (:mod:`rttm.web.prom`), with this help text;
* ``rttm rules export --prometheus`` writes each rule's condition as the PromQL of
  :func:`promql` over those series.

The engine works in windows (10 s by default). Prometheus works with counters and
``rate()``, so a metric's :class:`Kind` says how it crosses over: a per-window count is
added into a ``_total`` counter that never goes down; a per-second rate or a ratio is not
exposed, ``rate()`` of the counters gives it; a state (lag, depth, status, stuck trades) is
a gauge; latency quantiles are a summary in seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, LiteralString

#: Prometheus' name of every metric starts with this (``rttm_queue_lag``).
PREFIX: Final = "rttm_"
#: What Prometheus' rate() and increase() look back over in exported rules, at least: a
#: counter steps once per window, so the range spans two windows when they are longer.
RANGE_S: Final = 60
#: A service or trade creation active within this long is expected to go on: the engine
#: writes its silence as zero (not as nothing), and an exported rule on a zero needs it.
EXPECT_S: Final = 900.0
#: Stored latency quantiles (``quantile="p99"``) and Prometheus' spelling of each (0.99).
QUANTILES: Final[Mapping[str, str]] = MappingProxyType({"p50": "0.5", "p95": "0.95", "p99": "0.99"})
#: The consumed offset of each queue partition, from the services' snapshots: a gauge of
#: ``rttm serve`` whose rate() is the consume rate.
CONSUMED_OFFSET: Final = "rttm_queue_consumed_offset"
PRODUCED_OFFSET: Final = "rttm_queue_produced_offset"


class Kind(StrEnum):
    """What a metric's value of one window is, which decides its Prometheus form."""

    COUNT = "count"  # things that happened in the window: a counter, <name>_total
    RATE = "rate"  # a count per second over the window: rate() of a counter
    RATIO = "ratio"  # one count over another in the window: a ratio of rate()s
    STATE = "state"  # how things stand at the window's end: a gauge
    LATENCY = "latency"  # quantiles of milliseconds in the window: a summary, in seconds


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of the engine (``name`` as stored and as the alert rules name it)."""

    name: str
    labels: frozenset[str]
    kind: Kind
    help: str
    #: A state whose latest value stands until a newer one (a queue's lag); else a window
    #: without the point means zero (no trade stuck there now).
    lasting: bool = False
    #: RATE: the count metric it is the rate of; RATIO: the numerator's.
    of: str = ""
    #: RATIO: the count metric of the denominator.
    per: str = ""
    #: Its Prometheus name after ``rttm_``, where ``name`` alone would be unclear.
    prometheus_name: str = ""

    @property
    def family(self) -> str:
        """Its Prometheus name: a counter's without ``_total`` (its samples end in it)."""
        if self.kind is Kind.LATENCY:
            return PREFIX + self.name.removesuffix("_ms") + "_seconds"
        return PREFIX + (self.prometheus_name or self.name)

    @property
    def exposed(self) -> str | None:
        """The family ``rttm serve`` exposes, or None for a rate or a ratio."""
        return None if self.kind in (Kind.RATE, Kind.RATIO) else self.family

    @property
    def prometheus_type(self) -> str:
        """``counter``, ``gauge`` or ``summary``."""
        return {Kind.COUNT: "counter", Kind.LATENCY: "summary"}.get(self.kind, "gauge")


def _metrics(*found: Metric) -> Mapping[str, Metric]:
    return MappingProxyType({metric.name: metric for metric in found})


def _l(names: str = "") -> frozenset[str]:
    return frozenset(names.split())


C, R, Q, S, L = Kind.COUNT, Kind.RATE, Kind.RATIO, Kind.STATE, Kind.LATENCY
#: The catalogue, by name.
METRICS: Final[Mapping[str, Metric]] = _metrics(
    Metric(
        "events",
        _l("service event_type"),
        C,
        "Trade events on rttm.trade.events",
        prometheus_name="trade_events",
    ),
    Metric("tps", _l("service"), R, "Trade events per second", of="events"),
    Metric("trades_started", _l(), C, "Trades created (first-stage events)"),
    Metric("trades_completed", _l(), C, "Trades done (completion events)"),
    Metric("trades_rejected", _l(), C, "Trades failed (rejection events)"),
    Metric(
        "hop_latency_ms",
        _l("from_stage to_stage quantile"),
        L,
        "Latency between consecutive stages of a trade, in the newest window",
        lasting=True,
    ),
    Metric(
        "e2e_latency_ms",
        _l("quantile"),
        L,
        "Latency from a trade's creation to its last stage, in the newest window",
        lasting=True,
    ),
    Metric(
        "queue_lag",
        _l("service topic partition"),
        S,
        "Messages a consumer has not yet consumed",
        lasting=True,
    ),
    Metric(
        "queue_lag_seconds",
        _l("service topic partition"),
        S,
        "Queue lag over the consume rate: how long the backlog takes to drain",
        lasting=True,
    ),
    Metric(
        "consume_rate",
        _l("service topic partition"),
        R,
        "Messages consumed per second",
        lasting=True,
    ),
    Metric(
        "consumer_status",
        _l("service topic"),
        S,
        "Consumer status: 0 OK, 1 WARN (lag growing), 2 STALL, 3 STOP",
        lasting=True,
    ),
    Metric(
        "time_to_data_loss_seconds",
        _l("service topic"),
        S,
        "Time until retention deletes messages the consumer has not read",
        lasting=True,
    ),
    Metric("dlq_events", _l("topic reason"), C, "Messages dead-lettered"),
    Metric(
        "dlq_depth",
        _l("topic"),
        S,
        "Messages in each DLQ topic since RTTM started counting",
        lasting=True,
    ),
    Metric("dlq_depth_by_reason", _l("topic reason"), S, "DLQ depth per reason", lasting=True),
    Metric("dlq_rate", _l("topic"), R, "Messages dead-lettered per second", of="dlq_events"),
    Metric(
        "dlq_ratio", _l(), Q, "DLQ events per trade started", of="dlq_events", per="trades_started"
    ),
    Metric("errors", _l("service error_type"), C, "Error events"),
    Metric("error_rate", _l("service"), R, "Error events per second", of="errors"),
    Metric(
        "error_ratio",
        _l("service"),
        Q,
        "Error events per trade event of the service",
        of="errors",
        per="events",
    ),
    Metric("log_events", _l("service level category"), C, "WARN and ERROR log events"),
    Metric(
        "log_rate", _l("service level"), R, "WARN and ERROR log events per second", of="log_events"
    ),
    Metric(
        "stuck_trades",
        _l("stage service"),
        S,
        "Trades stuck after a stage now (no next event within the allowed time)",
    ),
    Metric("late_events", _l("topic"), C, "Events past the correction horizon, not counted"),
    Metric("corrected_events", _l("topic"), C, "Late events added to their closed window"),
    Metric("repeated_events", _l("topic"), C, "Repeated deliveries of a counted event, dropped"),
    Metric("invalid_messages", _l("topic"), C, "Messages rejected by the contracts"),
    Metric(
        "future_events",
        _l("topic"),
        C,
        "Events dated more than 5 minutes past the wall clock, ignored",
    ),
    Metric(
        "cardinality_exceeded",
        _l("metric label"),
        C,
        "Label sets folded into __other__ by the series cap (RTTM_METRICS_MAX_SERIES)",
    ),
    Metric(
        "trades_untracked", _l(), C, "In-flight trades let go for space (RTTM_METRICS_MAX_TRADES)"
    ),
    Metric(
        "partitions_untracked",
        _l(),
        C,
        "Queue partitions let go for space (RTTM_METRICS_MAX_PARTITIONS)",
    ),
)

#: Metrics whose latest value stands until a newer one (the others: absent means zero).
LASTING: Final = frozenset(name for name, metric in METRICS.items() if metric.lasting)
#: Per-window counts: each is added into a Prometheus counter.
COUNTS: Final = frozenset(name for name, metric in METRICS.items() if metric.kind is Kind.COUNT)


def named(name: LiteralString) -> LiteralString:
    """``name``, checked against the catalogue: for code that reads a metric by its name.

    A query or a table of metric names built with it fails on import when a metric is
    renamed or dropped, instead of finding nothing.
    """
    if name not in METRICS:
        msg = f"{name!r} is not a metric of the catalogue (rttm/core/metric_catalogue.py)"
        raise KeyError(msg)
    return name


def quantile(stored: str) -> str:
    """Prometheus' quantile label value (``0.99``) for a stored one (``p99``)."""
    return QUANTILES.get(stored, stored)


#: Characters JSON leaves as they are that a PromQL string must not hold (YAML would fold
#: the line ends); JSON escapes the other control characters itself.
_ESCAPED = {chr(c): f"\\u{c:04x}" for c in (0x7F, 0x85, 0x2028, 0x2029)}


def _string(value: str) -> str:
    """``value`` as a PromQL string: JSON's escapes, characters beyond the BMP kept whole.

    PromQL refuses the surrogate pairs JSON would write for them.
    """
    quoted = json.dumps(value, ensure_ascii=False)
    return "".join(_ESCAPED.get(char, char) for char in quoted)


def _selector(family: str, match: Mapping[str, str]) -> str:
    matchers = ",".join(f"{name}={_string(value)}" for name, value in sorted(match.items()))
    return family + (f"{{{matchers}}}" if matchers else "")


def lookback_s(window_s: float) -> int:
    """The range of rate() and increase() in exported rules: a minute, or two windows."""
    return max(RANGE_S, math.ceil(2 * window_s))


def duration(seconds: float) -> str:
    """``seconds`` as a PromQL duration (``1m``, ``90s``)."""
    whole = math.ceil(seconds)
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"


def _summed(metric: Metric, expression: str) -> str:
    by = f" by ({', '.join(sorted(metric.labels))}) " if metric.labels else ""
    return f"sum{by}({expression})"


def _rate(metric: Metric, count: str, match: Mapping[str, str], window_s: float) -> str:
    """Per second of ``count``'s counter, summed to ``metric``'s labels."""
    counter = _selector(METRICS[count].family + "_total", match)
    return _summed(metric, f"rate({counter}[{duration(lookback_s(window_s))}])")


def promql(metric: Metric, match: Mapping[str, str], window_s: float) -> str:
    """The PromQL of ``metric{match}`` per window of ``window_s`` over the exposed series.

    States and latencies are read as they are (latencies back in milliseconds); a rate is
    rate() of its count's counter; a ratio, one such rate over another; a count per window
    is the counter's increase over :func:`lookback_s`, scaled to one window.
    """
    if metric.kind is Kind.STATE:
        return _selector(metric.family, match)
    if metric.kind is Kind.LATENCY:
        named = {
            name: quantile(value) if name == "quantile" else value for name, value in match.items()
        }
        return f"{_selector(metric.family, named)} * 1000"
    lookback = lookback_s(window_s)
    if metric.name == "consume_rate":
        return f"rate({_selector(CONSUMED_OFFSET, match)}[{duration(lookback)}])"
    if metric.kind is Kind.RATE:
        return _rate(metric, metric.of, match, window_s)
    if metric.kind is Kind.RATIO:
        ratio = (
            _rate(metric, metric.of, match, window_s),
            _rate(metric, metric.per, match, window_s),
        )
        return " / ".join(ratio)
    windows = lookback / window_s
    scaled = "" if windows == 1 else f" / {windows:g}"
    counter = _selector(metric.family + "_total", match)
    return _summed(metric, f"increase({counter}[{duration(lookback)}])") + scaled


def expected(metric: Metric, match: Mapping[str, str]) -> str | None:
    """PromQL true where ``metric``'s zero means something: activity within ``EXPECT_S``.

    The engine writes a count, rate or ratio of zero only while activity is expected; a
    Prometheus counter stays after it stops, so a rule on a zero needs this beside it.
    None for a metric the engine writes whatever happens (a state, a latency).
    """
    count = {Kind.COUNT: metric.name, Kind.RATE: metric.of, Kind.RATIO: metric.per}.get(metric.kind)
    if not count:
        return None
    counter = _selector(METRICS[count].family + "_total", match)
    return _summed(metric, f"increase({counter}[{duration(EXPECT_S)}])") + " > 0"
