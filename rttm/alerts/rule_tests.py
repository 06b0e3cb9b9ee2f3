"""Unit tests of a rules file, like ``promtool test rules``: series in, expected alerts out.

A test file (TOML) names the rules file (``rules``, relative to the test file; omitted: the
shipped defaults), the evaluation interval (``window``, default ``"10s"``) and the start
(``start``, default 1970-01-01T00:00:00Z). Each ``[[series]]`` gives one value per window;
window i covers [start + i·window, start + (i+1)·window) and is evaluated at its end. Each
``[[expect]]`` names an evaluation by its offset from the start (``at``, a multiple of the
window) and the exact set of alerts ``firing`` there (default: none) and, if given, the exact
set ``pending``. An expected alert is a rule name and the *series* labels; the rule's extra
``labels`` may be listed as well (they are ignored when comparing).

Values, separated by blanks, in promtool's notation (``promtool test rules`` expands
each the same way):

* ``7``, ``-0.5``, ``1e6``, ``Inf``, ``NaN``: one value;
* ``_``: the series is absent from that window; ``_xN``: absent for N windows;
* ``VxN``: V, then N more times: N+1 values (``0x2`` is ``0 0 0``);
* ``a+bxN`` / ``a-bxN``: a, then N more steps adding (subtracting) b: N+1 values
  (``1+2x3`` is ``1 3 5 7``).

See ``default_rules_test.toml`` beside this module for a complete example.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec

from rttm.alerts.engine import AlertEngine, format_labels
from rttm.alerts.rules import METRIC_LABELS, METRICS, Rule, load_rules
from rttm.core.durations import parse_duration
from rttm.core.errors import RttmError
from rttm.metrics.points import Labels, Point, labels_of

#: Most windows one test file may evaluate (about 11 days of 10 s windows), so that a typo
#: such as ``0x10000000`` is an error instead of minutes of evaluation.
MAX_WINDOWS = 100_000

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = re.compile(rf"[-+]?(?:{_NUMBER}|Inf|inf|NaN|nan)")
_REPEAT = re.compile(rf"({_VALUE.pattern})(?:([-+])({_NUMBER}))?x(\d+)")
_ABSENT = re.compile(r"_(?:x(\d+))?")


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class _Alert(_Spec, frozen=True):
    rule: str
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class _Series(_Spec, frozen=True):
    metric: str
    values: str
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class _Expect(_Spec, frozen=True):
    at: str
    firing: tuple[_Alert, ...] = ()
    pending: tuple[_Alert, ...] | None = None


class _TestFile(_Spec, frozen=True):
    expect: Annotated[tuple[_Expect, ...], msgspec.Meta(min_length=1)]
    series: tuple[_Series, ...] = ()
    rules: str | None = None
    window: str = "10s"
    start: Annotated[datetime, msgspec.Meta(tz=True)] = EPOCH


def default_tests_path() -> Path:
    """The shipped tests of the default rules (``default_rules_test.toml``)."""
    return Path(str(resources.files(__package__).joinpath("default_rules_test.toml")))


def parse_values(text: str) -> list[float | None]:
    """One value per window from the series notation (None: absent in that window).

    Raises:
        ValueError: a token that is none of the forms, named in the message.
    """
    values: list[float | None] = []
    for token in text.split():
        if absent := _ABSENT.fullmatch(token):
            values += [None] * _count(values, int(absent.group(1) or 1))
        elif repeat := _REPEAT.fullmatch(token):
            first, sign, step, count = repeat.groups()
            # As promtool: the first value, then N more (N+1 in all).
            steps = range(_count(values, int(count) + 1))
            delta = 0.0 if sign is None else float(step) if sign == "+" else -float(step)
            values += [float(first) + delta * i for i in steps]
        elif _VALUE.fullmatch(token):
            values.append(float(token))
        else:
            msg = f"invalid value {token!r}: expected a number, '_', 'VxN', '_xN' or 'a+bxN'"
            raise ValueError(msg)
    return values


def _count(values: list[float | None], more: int) -> int:
    """``more``, checked before the values are made (``0x10000000000`` would fill memory)."""
    if len(values) + more > MAX_WINDOWS:
        msg = f"more than {MAX_WINDOWS:,} values"
        raise ValueError(msg)
    return more


def run_tests(path: Path) -> list[str]:
    """Run the test file ``path``; returns the failures (empty: every expectation held).

    Raises:
        RttmError: the test file or its rules file cannot be read or is malformed.
    """
    spec = _load(path)
    rules = load_rules(None if spec.rules is None else path.parent / spec.rules)
    by_name = {rule.name: rule for rule in rules}
    problems: list[str] = []
    window_us = _microseconds(spec.window, "window", problems)
    if window_us == 0 and not problems:
        problems.append("window must be longer than 0s")
    series = [_series(i, s, problems) for i, s in enumerate(spec.series)]
    due: dict[int, list[int]] = {}
    for k, expect in enumerate(spec.expect):
        at_us = _microseconds(expect.at, f"expect[{k}].at", problems)
        for alert in (*expect.firing, *(expect.pending or ())):
            if alert.rule not in by_name:
                problems.append(f"expect[{k}]: no rule {alert.rule!r} in the rules")
        if window_us and (at_us % window_us or not window_us <= at_us <= window_us * MAX_WINDOWS):
            multiple = f"a multiple of {spec.window}"
            problems.append(f"expect[{k}].at {expect.at!r} is not a window end ({multiple})")
        elif window_us:
            due.setdefault(at_us // window_us - 1, []).append(k)
    if problems:
        raise RttmError("\n".join(f"{path}: {problem}" for problem in problems))
    engine = AlertEngine(rules)
    failures: list[str] = []
    for i in range(max(due) + 1):
        start = spec.start + timedelta(microseconds=i * window_us)
        end = start + timedelta(microseconds=window_us)
        points = [
            Point(metric, labels, start, end, value)
            for metric, labels, values in series
            if i < len(values) and (value := values[i]) is not None
        ]
        engine.evaluate(points, end)
        for k in due.get(i, ()):
            failures += _compare(path, k, spec.expect[k], engine, by_name)
    return failures


def _load(path: Path) -> _TestFile:
    try:
        return msgspec.convert(tomllib.loads(path.read_text(encoding="utf-8")), _TestFile)
    except OSError as exc:
        msg = f"cannot read rule tests {path}: {exc.strerror}"
        raise RttmError(msg) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        msg = f"{path}: {exc}"
        raise RttmError(msg) from None


def _microseconds(text: str, where: str, problems: list[str]) -> int:
    try:
        return round(parse_duration(text) * 1_000_000)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return 0


def _series(
    index: int, series: _Series, problems: list[str]
) -> tuple[str, Labels, list[float | None]]:
    where = f"series[{index}]"
    known = METRIC_LABELS.get(series.metric)
    if known is None:
        close = difflib.get_close_matches(series.metric, METRICS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{where}: unknown metric {series.metric!r}{hint}")
    elif unknown := sorted(series.labels.keys() - known):
        labels = ", ".join(sorted(known)) or "none"
        problems.append(f"{where}: {', '.join(unknown)} not labels of {series.metric} ({labels})")
    try:
        values = parse_values(series.values)
    except ValueError as exc:
        problems.append(f"{where}.values: {exc}")
        values = []
    return series.metric, labels_of(series.labels), values


def _compare(
    path: Path, index: int, expect: _Expect, engine: AlertEngine, rules: dict[str, Rule]
) -> list[str]:
    failures: list[str] = []
    checks = [("firing", expect.firing)]
    if expect.pending is not None:
        checks.append(("pending", expect.pending))
    for state, wanted in checks:
        want = {(alert.rule, _series_labels(alert, rules[alert.rule])) for alert in wanted}
        got = {(alert.rule, alert.series) for alert in engine.active() if alert.state == state}
        if want != got:
            failures.append(
                f"{path}: expect[{index}] at {expect.at}: {state}: "
                f"expected {_show(want)}, got {_show(got)}"
            )
    return failures


def _series_labels(alert: _Alert, rule: Rule) -> Labels:
    """The expected series labels: the listed ones less the rule's own extra labels."""
    extra = dict(rule.labels)
    return labels_of({k: v for k, v in alert.labels.items() if extra.get(k) != v})


def _show(alerts: Iterable[tuple[str, Labels]]) -> str:
    shown = [f"{rule}{format_labels(labels) if labels else ''}" for rule, labels in alerts]
    return "[" + ", ".join(sorted(shown)) + "]" if shown else "nothing"
