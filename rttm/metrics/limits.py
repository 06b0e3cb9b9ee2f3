"""Size caps of the metrics engine: what one buggy producer can cost, whatever it sends.

RTTM watches producers it does not control. A release that puts a request id into
``service_name``, or a timestamp into a DLQ reason, must not multiply the rows written per
window, the alerts raised or the memory held. Every cap is on by default and set through
the environment:

* ``RTTM_METRICS_MAX_SERIES`` — label sets per metric per window (default 2,000). Beyond it
  the least important points are added into one whose label values are ``__other__``
  (:func:`fold`), and the window gets a ``cardinality_exceeded{metric,label}`` point naming
  the label with the most distinct values;
* ``RTTM_METRICS_MAX_DLQ_REASONS`` — named DLQ reasons per topic (default 50); the rest are
  counted under ``__other__`` (see :mod:`rttm.metrics.reasons`);
* ``RTTM_ALERTS_MAX_PER_RULE`` — active alerts per rule (default 100); further series that
  meet the condition are watched as one ``__other__`` alert;
* ``RTTM_METRICS_MAX_TRADES`` — in-flight trades tracked (default 250,000, split over the
  shards); the least recently active ones are let go and counted (``trades_untracked``);
* ``RTTM_METRICS_MAX_PARTITIONS`` — queue partitions tracked (default 10,000, split over
  the shards); the least recently reported ones are let go (``partitions_untracked``);
* ``RTTM_METRICS_MAX_IDS`` — event ids remembered to drop repeated deliveries (default
  10,000,000, split over the shards, 8 bytes each once their window closed: an hour at
  2,800 events/s); past it the oldest windows' ids are forgotten before their correction
  horizon ends (see :mod:`rttm.metrics.repeats`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rttm.core.config import ConfigError
from rttm.core.metric_catalogue import LASTING
from rttm.metrics.points import Labels, Point

#: The label value that stands for everything beyond a cap.
OTHER = "__other__"
#: Labels kept as they are when points are folded: they are a point's structure (which
#: quantile), not a producer's data.
STRUCTURAL = frozenset({"quantile"})

ENV_MAX_SERIES = "RTTM_METRICS_MAX_SERIES"
ENV_MAX_DLQ_REASONS = "RTTM_METRICS_MAX_DLQ_REASONS"
ENV_MAX_ALERTS = "RTTM_ALERTS_MAX_PER_RULE"
ENV_MAX_TRADES = "RTTM_METRICS_MAX_TRADES"
ENV_MAX_PARTITIONS = "RTTM_METRICS_MAX_PARTITIONS"
ENV_MAX_IDS = "RTTM_METRICS_MAX_IDS"

#: Metrics that describe a state (a gauge): their latest value stands until a newer one.
STATES = LASTING
#: Metrics whose most urgent values are the least (the others: the greatest).
LEAST_FIRST = frozenset({"time_to_data_loss_seconds"})
#: Folded, a state, a ratio or a latency is the worst of its points, so that an ``__other__``
#: point never crosses a threshold none of its points crosses; a count or a rate is their
#: sum, so that totals stay exact.
_FOLD_WORST = STATES | frozenset({"error_ratio", "dlq_ratio"})
#: When a state held for trades or partitions is full, it is cut to this share of its
#: capacity in one pass (cheaper than one eviction per new entry).
EVICT_TO = 0.9


@dataclass(frozen=True)
class Limits:
    """The engine's caps (see the module docstring); whole-engine figures, not per shard."""

    series: int = 2_000
    dlq_reasons: int = 50
    alerts_per_rule: int = 100
    trades: int = 250_000
    partitions: int = 10_000
    ids: int = 10_000_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Limits:
        """The caps set in ``env``, the defaults for the others; a bad value is an error."""
        default = cls()
        return cls(
            series=_count(env, ENV_MAX_SERIES, default.series, least=10),
            dlq_reasons=_count(env, ENV_MAX_DLQ_REASONS, default.dlq_reasons, least=1),
            alerts_per_rule=_count(env, ENV_MAX_ALERTS, default.alerts_per_rule, least=2),
            trades=_count(env, ENV_MAX_TRADES, default.trades, least=100),
            partitions=_count(env, ENV_MAX_PARTITIONS, default.partitions, least=10),
            ids=_count(env, ENV_MAX_IDS, default.ids, least=1000),
        )


def _count(env: Mapping[str, str], name: str, default: int, *, least: int) -> int:
    raw = env.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < least:
        msg = f"{name} must be a whole number of at least {least}, got {env[name]!r}"
        raise ConfigError(msg)
    return int(raw)


def worst_first(metric: str) -> bool:
    """Whether the metric's most important points are its largest (else its smallest)."""
    return metric not in LEAST_FIRST


def combine(metric: str, values: Sequence[float]) -> float:
    """The folded value of ``values`` of ``metric``: their sum, or the worst of them."""
    numbers = [value for value in values if value == value] or [math.nan]  # NaN: no value
    if metric not in _FOLD_WORST:
        return float(sum(numbers))
    return max(numbers) if worst_first(metric) else min(numbers)


def other_labels(labels: Labels) -> Labels:
    """``labels`` with every value but the structural ones replaced by ``__other__``."""
    return tuple((name, value if name in STRUCTURAL else OTHER) for name, value in labels)


def widest_label(labels: Sequence[Labels]) -> str:
    """The label name with the most distinct values among ``labels``: the one that exploded."""
    distinct: dict[str, set[str]] = {}
    for label_set in labels:
        for name, value in label_set:
            if name not in STRUCTURAL:
                distinct.setdefault(name, set()).add(value)
    return max(sorted(distinct), key=lambda name: len(distinct[name]), default="")


@dataclass(frozen=True, slots=True)
class Folded:
    """What :func:`fold` did to one metric of one window."""

    metric: str
    dropped: int  # label sets added into ``__other__``
    label: str  # the label with the most distinct values


def fold(metric: str, points: list[Point], cap: int) -> tuple[list[Point], Folded | None]:
    """At most ``cap`` label sets of one metric's points keep their names; the rest fold.

    The most important points stay (largest values first; for time to data loss the
    smallest), ties broken by labels so the same series stay named from window to window.
    The others are combined (:func:`combine`) into one point per structural label set (so
    ``hop_latency_ms`` may hold one ``__other__`` point per quantile), whose other label
    values are ``__other__``.
    """
    if len(points) <= cap:
        return points, None
    largest = worst_first(metric)

    def rank(point: Point) -> tuple[bool, float, Labels]:
        if point.value != point.value:  # NaN: the least important, whatever the order
            return True, 0.0, point.labels
        return False, (-point.value if largest else point.value), point.labels

    ranked = sorted(points, key=rank)
    kept = {point.labels: point for point in ranked[:cap]}
    rest = ranked[cap:]
    groups: dict[Labels, list[float]] = {}
    for point in rest:
        groups.setdefault(other_labels(point.labels), []).append(point.value)
    first = rest[0]
    for labels, values in sorted(groups.items()):
        already = kept.get(labels)  # an ``__other__`` point of its own (a DLQ reason's)
        if already is not None:
            values.append(already.value)
        kept[labels] = Point(
            metric, labels, first.window_start, first.window_end, combine(metric, values)
        )
    folded = Folded(metric, len(rest), widest_label([p.labels for p in points]))
    return list(kept.values()), folded
