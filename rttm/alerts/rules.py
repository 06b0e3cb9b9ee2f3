"""Alert rules: the model, durations, and a strict checker of rules files (TOML).

A rules file is a list of ``[[rules]]`` tables with the keys ``name`` (unique,
``[A-Za-z][A-Za-z0-9_]*``), ``metric`` (one of ``METRICS``), ``op`` (``> >= < <= == !=``),
``threshold`` (a number) and ``severity`` (info, warning, critical), all required, and the
optional ``match`` (label equality matchers), ``for`` and ``keep_firing_for`` (durations,
default ``"0s"``), ``summary`` and ``description`` (texts that may hold ``{{ $value }}`` and
``{{ $labels.NAME }}``, see :mod:`rttm.alerts.templates`), ``runbook_url`` (an http(s) link
sent with the alert) and ``labels`` (extra labels of the alert). The shipped
``default_rules.toml`` is an example.

``check_text`` reports every problem of a file in one pass, each on the line of the
offending key, so that one run of ``rttm rules check`` is enough to fix a file;
``load_rules`` refuses a file with any problem.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from rttm.alerts import templates
from rttm.alerts._lines import KeyLines
from rttm.core import metric_catalogue as catalogue
from rttm.core.durations import parse_duration
from rttm.core.errors import RttmError
from rttm.metrics.points import Labels, labels_of

#: The label names of every metric the metrics engine emits, by metric name.
METRIC_LABELS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {name: metric.labels for name, metric in catalogue.METRICS.items()}
)

#: The metric names a rule may watch: exactly what the metrics engine emits.
METRICS: Final = frozenset(METRIC_LABELS)

#: Comparison of a series value (left) with the rule's threshold (right).
OPS: Final[Mapping[str, Callable[[float, float], bool]]] = MappingProxyType(
    {
        ">": operator.gt,
        ">=": operator.ge,
        "<": operator.lt,
        "<=": operator.le,
        "==": operator.eq,
        "!=": operator.ne,
    }
)

SEVERITIES: Final = ("info", "warning", "critical")

_RULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: A Prometheus label name.
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS: Final = (
    "name",
    "metric",
    "match",
    "op",
    "threshold",
    "for",
    "keep_firing_for",
    "severity",
    "summary",
    "description",
    "runbook_url",
    "labels",
)
#: Labels every alert gets from RTTM, which a rule's ``labels`` may not set.
_SET_BY_RTTM: Final[Mapping[str, str]] = MappingProxyType(
    {
        "alertname": "every alert is named after its rule",
        "severity": "set it with the rule's severity key",
        "source": 'RTTM marks its alerts source="rttm" for routes and silences',
    }
)
_RUNBOOK_URL = re.compile(r"https?://[^\s/?#]+\S*")
_REQUIRED: Final = ("name", "metric", "op", "threshold", "severity")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """``metric{match} op threshold`` held for ``for_s`` seconds raises an alert per series.

    Build it from a file with ``load_rules``, which checks what ``__post_init__`` does not
    (known metric, label names, severity).
    """

    name: str
    metric: str
    match: Labels = ()
    op: str
    threshold: float
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    severity: str = "warning"
    summary: str = ""  # one line; may hold {{ $value }} and {{ $labels.NAME }}
    description: str = ""  # more detail, same templates
    runbook_url: str = ""  # what to do about it: sent as an annotation when set
    labels: Labels = ()  # extra labels of the alert, added to the series labels

    def __post_init__(self) -> None:
        if self.op not in OPS:
            msg = f"rule {self.name!r}: op {self.op!r} is not one of {' '.join(OPS)}"
            raise ValueError(msg)
        if self.for_s < 0 or self.keep_firing_for_s < 0:
            msg = f"rule {self.name!r}: durations must not be negative"
            raise ValueError(msg)

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the condition (NaN meets only ``!=``, as in Prometheus)."""
        return OPS[self.op](value, self.threshold)

    def matches(self, point_labels: Labels) -> bool:
        """Whether every matcher equals the point's label (a missing label counts as ``""``)."""
        return all(_label(point_labels, name) == value for name, value in self.match)


def _label(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """What is wrong in a rules file, and on which line (1-based)."""

    line: int
    message: str


def format_problems(where: str, problems: Iterable[Problem]) -> str:
    """``N problems in WHERE:`` then one ``WHERE:LINE: message`` line per problem."""
    found = list(problems)
    noun = "problem" if len(found) == 1 else "problems"
    lines = [f"{len(found)} {noun} in {where}:"]
    lines += [f"{where}:{problem.line}: {problem.message}" for problem in found]
    return "\n".join(lines)


def default_rules_path() -> Path:
    """Where the shipped default rules are (a file inside the installed package)."""
    return Path(str(resources.files(__package__).joinpath("default_rules.toml")))


def load_rules(path: Path | None = None) -> tuple[Rule, ...]:
    """The rules of ``path``, or the shipped defaults.

    Raises:
        RttmError: the file cannot be read or has problems; the message lists all of them.
    """
    if path is None:
        text = resources.files(__package__).joinpath("default_rules.toml").read_text("utf-8")
        where = str(default_rules_path())
    else:
        text = read_rules_text(path)
        where = str(path)
    rules, problems = parse_text(text)
    if problems:
        raise RttmError(format_problems(where, problems))
    return rules


def read_rules_text(path: Path) -> str:
    """The text of a rules file; an unreadable or non-UTF-8 file is an ``RttmError``."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read rules {path}: {exc.strerror}"
        raise RttmError(msg) from None
    except UnicodeDecodeError as exc:
        msg = f"cannot read rules {path}: not UTF-8 (byte {exc.start})"
        raise RttmError(msg) from None


def check_text(text: str) -> list[Problem]:
    """Every problem of the rules file ``text``, ordered by line (empty: the file is fine)."""
    return parse_text(text)[1]


def parse_text(text: str) -> tuple[tuple[Rule, ...], list[Problem]]:
    """The valid rules of ``text`` and every problem found, ordered by line."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return (), [_toml_problem(exc, text)]
    lines = KeyLines(text)
    problems: list[Problem] = []
    for key in document:
        if key != "rules":
            message = f"unknown top-level key {key!r}: a rules file holds [[rules]] tables only"
            problems.append(Problem(lines.top(key), message + _suggest(key, ["rules"])))
    entries = document.get("rules")
    rules: list[Rule] = []
    if not isinstance(entries, list):
        if entries is None:
            problems.append(Problem(1, "no rules: add [[rules]] tables"))
        else:
            problems.append(Problem(lines.top("rules"), "rules must be [[rules]] tables"))
    elif not entries:
        problems.append(Problem(lines.top("rules"), "no rules: add [[rules]] tables"))
    else:
        first_seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            rule = _RuleCheck(entry, index, lines, problems, first_seen).rule()
            if rule is not None:
                rules.append(rule)
    problems.sort(key=lambda problem: problem.line)
    return tuple(rules), problems


def _toml_problem(exc: tomllib.TOMLDecodeError, text: str) -> Problem:
    reason = str(exc)
    if found := re.search(r"\(at line (\d+), column (\d+)\)", reason):
        line = int(found.group(1))
        reason = reason.replace(found.group(0), f"(column {found.group(2)})")
    else:  # "(at end of document)"
        line = max(1, len(text.splitlines()))
    return Problem(line, f"not valid TOML: {reason[:1].lower()}{reason[1:]}")


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _toml_type(value: object) -> str:
    types: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),
        (str, "a string"),
        (int, "an integer"),
        (float, "a float"),
        (list, "an array"),
        (dict, "a table"),
        (datetime, "a date-time"),
        (date, "a date"),
        (time, "a time"),
    )
    return next((name for kind, name in types if isinstance(value, kind)), type(value).__name__)


class _RuleCheck:
    """Checks the ``index``-th ``[[rules]]`` table, adding each problem with its line."""

    def __init__(
        self,
        entry: object,
        index: int,
        lines: KeyLines,
        problems: list[Problem],
        first_seen: dict[str, int],
    ) -> None:
        self.entry = entry if isinstance(entry, dict) else {}
        self.index, self.lines, self.problems = index, lines, problems
        self.first_seen = first_seen
        name = self.entry.get("name")
        self.where = f"rule {name!r}" if isinstance(name, str) and name else f"rules[{index}]"
        self.ok = isinstance(entry, dict)
        if not self.ok:
            self.problem(f"must be a table, not {_toml_type(entry)}")

    def problem(self, message: str, *path: str) -> None:
        line = self.lines.rule(self.index, *path)
        self.problems.append(Problem(line, f"{self.where}: {message}"))
        self.ok = False

    def rule(self) -> Rule | None:
        """The rule, or None if it has a problem (all of them added)."""
        if not self.ok:
            return None
        entry = self.entry
        for key in entry:
            if key not in _KEYS:
                self.problem(f"unknown key {key!r}{_suggest(key, _KEYS)}", key)
        for key in _REQUIRED:
            if key not in entry:
                self.problem(f"missing required key {key!r}")
        name = self._name()
        metric = self._metric()
        op = self._string("op", OPS)
        threshold = self._threshold()
        for_s = self._duration("for")
        keep_firing_for_s = self._duration("keep_firing_for")
        severity = self._string("severity", SEVERITIES)
        summary = self._text("summary")
        description = self._text("description")
        runbook_url = self._runbook_url()
        match = self._labels("match", metric)
        labels = self._labels("labels", metric)
        if not self.ok or name is None or metric is None or op is None or threshold is None:
            return None
        return Rule(
            name=name,
            metric=metric,
            match=match,
            op=op,
            threshold=float(threshold),
            for_s=for_s,
            keep_firing_for_s=keep_firing_for_s,
            severity=severity or "warning",
            summary=summary or "",
            description=description or "",
            runbook_url=runbook_url or "",
            labels=labels,
        )

    def _typed(self, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = self.entry.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or isinstance(value, bool):
            self.problem(f"{key} must be {what}, not {_toml_type(value)}", key)
            return None
        return value

    def _name(self) -> str | None:
        name: str | None = self._typed("name", str, "a string")
        if name is None:
            return None
        if not _RULE_NAME.fullmatch(name):
            self.problem(f"name {name!r} must match [A-Za-z][A-Za-z0-9_]*", "name")
        elif name in self.first_seen:
            self.problem(f"duplicate rule name (first at line {self.first_seen[name]})", "name")
        else:
            self.first_seen[name] = self.lines.rule(self.index, "name")
        return name

    def _metric(self) -> str | None:
        metric: str | None = self._typed("metric", str, "a string")
        if metric is not None and metric not in METRICS:
            hint = _suggest(metric, METRICS) or f" (known: {', '.join(sorted(METRICS))})"
            self.problem(f"unknown metric {metric!r}{hint}", "metric")
            return None
        return metric

    def _string(self, key: str, choices: Iterable[str] | None = None) -> str | None:
        value: str | None = self._typed(key, str, "a string")
        if value is not None and choices is not None and value not in choices:
            options = list(choices)
            hint = _suggest(value, options)
            self.problem(f"{key} {value!r} is not one of {' '.join(options)}{hint}", key)
            return None
        return value

    def _text(self, key: str) -> str | None:
        text = self._string(key)
        for problem in templates.problems(text or ""):
            self.problem(f"{key}: {problem}", key)
        return text

    def _runbook_url(self) -> str | None:
        url = self._string("runbook_url")
        if url is not None and not _RUNBOOK_URL.fullmatch(url):
            self.problem(f"runbook_url {url!r} must be an http:// or https:// link", "runbook_url")
        return url

    def _threshold(self) -> float | None:
        value: float | None = self._typed("threshold", (int, float), "a number")
        if value is not None and math.isnan(value):
            self.problem("threshold must be a number, not nan", "threshold")
            return None
        return value

    def _duration(self, key: str) -> float:
        text: str | None = self._typed(key, str, "a duration string such as '1m'")
        if text is None:
            return 0.0
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.problem(f"{key}: {exc}", key)
            return 0.0

    def _labels(self, key: str, metric: str | None) -> Labels:
        table: dict[str, Any] | None = self._typed(key, dict, "a table of strings")
        if table is None:
            return ()
        known = METRIC_LABELS.get(metric or "")
        for name, value in table.items():
            if not isinstance(value, str):
                self.problem(f"{key}.{name} must be a string, not {_toml_type(value)}", key, name)
            if key == "match" and known is not None and name not in known:
                hint = _suggest(name, known) or f" (its labels: {', '.join(sorted(known))})"
                self.problem(f"match.{name} is not a label of {metric}{hint}", key, name)
            elif key == "labels" and not LABEL_NAME.fullmatch(name):
                self.problem(f"labels.{name}: not a label name [A-Za-z_][A-Za-z0-9_]*", key, name)
            elif key == "labels" and name in _SET_BY_RTTM:
                self.problem(f"labels.{name}: {_SET_BY_RTTM[name]}", key, name)
            elif key == "labels" and known is not None and name in known:
                self.problem(
                    f"labels.{name} would replace the series label {name} of {metric}", key, name
                )
        return labels_of(table)
