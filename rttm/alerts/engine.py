"""Alert evaluation: each rule's series move through pending → firing → resolved.

The semantics are Prometheus' alerting rules, evaluated once per metrics window at its end:

* every distinct label set of a rule's matching points is one alert instance;
* the condition holding with no instance makes it *pending*, ``started_at`` = that
  evaluation; it turns *firing* at the first evaluation at least ``for`` after
  ``started_at``. With ``for = 0`` it fires at once and only a ``firing`` transition is
  emitted, never a ``pending`` one;
* a pending instance whose condition fails (or whose series is absent) is dropped with an
  *inactive* transition;
* a firing instance whose condition fails is *resolved* once it has failed at every
  evaluation for ``keep_firing_for``, counted from the first failing one (at once when it is
  0); holding again in between cancels the countdown.

Only changes of state produce transitions. The result depends on the points and their times,
never on the order of the points.

A rule has at most ``max_per_rule`` active instances: when more series meet its condition,
the active ones go on, the worst new ones take the free places but one, and the others are
watched together as one instance whose label values are ``__other__`` (valued at the worst
of them), so that a producer that invents a series per message raises one alert, not
thousands.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias

import msgspec

from rttm.alerts import templates
from rttm.alerts.rules import Rule
from rttm.metrics import stats
from rttm.metrics.limits import OTHER, STRUCTURAL, Limits, other_labels
from rttm.metrics.points import Labels, Point

TransitionState: TypeAlias = Literal["pending", "firing", "resolved", "inactive"]
ActiveState: TypeAlias = Literal["pending", "firing"]

_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state of one alert instance, as published and stored."""

    rule: str
    labels: Labels  # the series labels plus the rule's extra labels, sorted
    state: TransitionState
    value: float  # the series value at this evaluation (the last one seen if absent)
    started_at: datetime  # when the condition first held: the instance's activation
    resolved_at: datetime | None  # the evaluation that resolved it (state "resolved" only)
    at: datetime  # the evaluation that made this transition (a window end)
    severity: str
    summary: str  # the rule's summary, its templates filled in

    def key(self) -> str:
        """``rule|labels|started_at|state``: the same for a re-evaluated transition.

        Usable as an idempotency key: replaying a window after a restart gives equal keys.
        """
        return f"{self.rule}|{format_labels(self.labels)}|{_iso(self.started_at)}|{self.state}"

    def as_json(self) -> bytes:
        """The transition as a JSON object (times in RFC 3339, labels as an object)."""
        return _ENCODER.encode(
            {
                "rule": self.rule,
                "labels": dict(self.labels),
                "state": self.state,
                "value": self.value,
                "started_at": _iso(self.started_at),
                "resolved_at": None if self.resolved_at is None else _iso(self.resolved_at),
                "at": _iso(self.at),
                "severity": self.severity,
                "summary": self.summary,
            }
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """One active alert instance: a series of a rule, pending or firing (the engine's state)."""

    rule: str
    series: Labels  # the series labels (the instance's identity within its rule)
    state: ActiveState
    value: float  # the latest value of the series
    started_at: datetime
    failing_since: datetime | None = None  # firing, condition failing since (keep_firing_for)


def _is_other(series: Labels) -> bool:
    return all(value == OTHER for name, value in series if name not in STRUCTURAL)


def format_labels(labels: Labels) -> str:
    """``{name="value",...}``, values quoted as JSON strings: one text per label set."""
    return "{" + ",".join(f"{name}={json.dumps(value)}" for name, value in labels) + "}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _rank(point: Point) -> tuple[datetime, bool, float]:
    # Orders duplicate points of one series: latest window, then a number over NaN, then
    # the largest value (a total order, so the pick does not depend on input order).
    number = not math.isnan(point.value)
    return point.window_end, number, point.value if number else 0.0


class AlertEngine:
    """Evaluates rules on the points of each window, remembering pending and firing alerts.

    Args:
        rules: the rules to evaluate; names must be unique.
        state: a ``snapshot()`` of an earlier engine, to continue from it (alerts of rules
            that no longer exist are dropped).
        max_per_rule: active instances per rule at most (see the module docstring).
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        state: Iterable[Alert] | None = None,
        max_per_rule: int = Limits.alerts_per_rule,
    ) -> None:
        if max_per_rule < 2:
            msg = f"max_per_rule must be at least 2, got {max_per_rule}"
            raise ValueError(msg)
        self._max_per_rule = max_per_rule
        ordered = sorted(rules, key=lambda rule: rule.name)
        self.rules = {rule.name: rule for rule in ordered}
        if len(self.rules) != len(ordered):
            msg = "alert rule names must be unique"
            raise ValueError(msg)
        self._alerts: dict[str, dict[Labels, Alert]] = {name: {} for name in self.rules}
        for alert in state or ():
            if alert.rule in self._alerts:
                self._alerts[alert.rule][alert.series] = alert

    def evaluate(self, points: Sequence[Point], at: datetime) -> list[Transition]:
        """Evaluate every rule at ``at`` (the window end) on that window's ``points``.

        Evaluation times should not go backwards. Returns the transitions, ordered by rule
        name, then labels.
        """
        if at.tzinfo is None:
            msg = f"evaluation time {at.isoformat()} has no time zone"
            raise ValueError(msg)
        latest: dict[str, dict[Labels, Point]] = {}
        for point in points:
            series = latest.setdefault(point.metric, {})
            seen = series.get(point.labels)
            if seen is None or _rank(point) > _rank(seen):
                series[point.labels] = point
        transitions: list[Transition] = []
        for rule in self.rules.values():
            values = self._capped(
                rule,
                {
                    labels: point.value
                    for labels, point in latest.get(rule.metric, {}).items()
                    if rule.matches(labels)
                },
            )
            for series_labels in sorted(values.keys() | self._alerts[rule.name].keys()):
                change = self._step(rule, series_labels, values.get(series_labels), at)
                if change is not None:
                    transitions.append(change)
        return transitions

    def _capped(self, rule: Rule, values: dict[Labels, float]) -> dict[Labels, float]:
        """``values`` with the new holding series beyond the rule's cap as one ``__other__``."""
        active = self._alerts[rule.name]
        if len(values) + len(active) <= self._max_per_rule:
            return values
        named = sum(1 for series in active if not _is_other(series))
        new = [s for s, v in values.items() if s not in active and rule.holds(v)]
        room = max(self._max_per_rule - 1 - named, 0)
        if len(new) <= room:
            return values
        down = rule.op in ("<", "<=")  # the worst value is the least
        new.sort(key=lambda s: ((values[s] if down else -values[s]), s))
        overflow = new[room:]
        kept = {s: v for s, v in values.items() if s not in set(overflow)}
        other = other_labels(overflow[0])
        worst = [values[s] for s in overflow] + ([kept[other]] if other in kept else [])
        kept[other] = min(worst) if down else max(worst)
        stats.record_alerts_folded(rule.name, len(overflow))
        return kept

    def _step(
        self, rule: Rule, series: Labels, value: float | None, at: datetime
    ) -> Transition | None:
        alerts = self._alerts[rule.name]
        before = alerts.get(series)
        holds = value is not None and rule.holds(value)
        if before is None and not holds:
            return None
        latest = value if value is not None else before.value if before is not None else math.nan
        after: Alert | None
        if holds:
            started = at if before is None else before.started_at
            firing = (before is not None and before.state == "firing") or (
                at - started >= timedelta(seconds=rule.for_s)
            )
            state: ActiveState = "firing" if firing else "pending"
            after = Alert(rule.name, series, state, latest, started)
        elif before is None or before.state == "pending":
            after = None
        else:
            since = before.failing_since or at
            kept = at - since < timedelta(seconds=rule.keep_firing_for_s)
            after = replace(before, value=latest, failing_since=since) if kept else None
        if after is None:
            alerts.pop(series, None)
        else:
            alerts[series] = after
        return _transition(rule, series, before, after, latest, at)

    def snapshot(self) -> tuple[Alert, ...]:
        """The engine's state, immutable and picklable: pass it back as ``state``."""
        return tuple(
            alert for name in self.rules for _, alert in sorted(self._alerts[name].items())
        )

    def active(self) -> tuple[Alert, ...]:
        """The pending and firing alerts, by rule name then labels (for status screens)."""
        return self.snapshot()


def _transition(
    rule: Rule,
    series: Labels,
    before: Alert | None,
    after: Alert | None,
    value: float,
    at: datetime,
) -> Transition | None:
    """The transition from ``before`` to ``after`` (None: no instance), if the state changed."""
    if before is not None and after is not None and before.state == after.state:
        return None
    if after is not None:
        state: TransitionState = after.state
        started, resolved_at = after.started_at, None
    elif before is not None:
        state = "resolved" if before.state == "firing" else "inactive"
        started, resolved_at = before.started_at, at if state == "resolved" else None
    else:
        return None
    merged = {**dict(series), **dict(rule.labels)}
    return Transition(
        rule=rule.name,
        labels=tuple(sorted(merged.items())),
        state=state,
        value=value,
        started_at=started,
        resolved_at=resolved_at,
        at=at,
        severity=rule.severity,
        summary=templates.render(rule.summary, value, merged),
    )
