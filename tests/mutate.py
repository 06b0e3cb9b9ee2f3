"""Mutation testing of RTTM modules over their fast tests: ``./dev mutate MODULE…``.

A mutant changes one spot of a module (a comparison, a constant, a condition, a statement,
a return value); the module's fast tests should fail on it ("killed"). A mutant they pass
("survived") is behaviour that no fast test pins. Our own small tool rather than mutmut or
cosmic-ray: mutants come from the AST in a fixed order with readable, stable ids, and each
run happens in a private copy of the repository, so the work tree is never touched.

Operators (each mutant changes exactly one spot):

* comparison: ``<``↔``<=``, ``>``↔``>=``, ``<``↔``>``, ``<=``↔``>=``, ``==``↔``!=``,
  ``in``↔``not in``, ``is``↔``is not``;
* number: an int ``n`` becomes ``n + 1`` and ``n - 1``; a float ``x`` becomes ``x * 2``
  and ``x / 2`` (``1.0`` for ``0.0``): ±1 on a float like ``1e-3`` changes its magnitude,
  not its value at the boundary it sets. Booleans are not numbers here;
* ``and``↔``or``; arithmetic ``+``↔``-``, ``*``↔``/``, also as ``+=``, ``-=``, ``*=``,
  ``/=`` (not on string operands: the mutant could only be a ``TypeError``);
* negation of the condition of ``if``, ``elif``, ``while`` and ``x if c else y`` (but not
  of a lone ``==``, ``in`` or ``is`` comparison: its flip is the same mutant);
* statement deletion: replaced by ``pass`` (not a function's last ``return``: that is the
  ``return None`` mutant; not an ``elif`` branch whole: its statements are);
* return value: ``return True``↔``return False``, ``return X`` → ``return None``.

Left alone, since a mutant there says nothing about behaviour or cannot be told apart by
any test: docstrings and other bare strings, type annotations (of arguments, returns and
``x: T`` targets, type aliases), ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":``
blocks, imports (``from __future__`` included), ``assert`` statements and
``raise AssertionError`` (unreachable markers), the expression of a ``raise`` and the
``msg = …`` assignment it reports (the message text), logging calls (``_LOG.warning(…)``:
observability, which the fast tests do not pin), and definitions (``def``, ``class``,
which only an import would notice missing).

A mutant is applied to the original text by replacing the source span of the one node it
changes, so the rest of the file keeps its formatting; it is kept only when the result
parses to exactly the mutated tree. Its id is ``PATH:LINE DESCRIPTION`` (``#2``, ``#3``
for repeats on a line), e.g. ``rttm/core/decode.py:111 and→or``: stable while the line stays.

Running: each of ``--jobs`` workers gets a private copy of the repository (``COPIED``, as
it is when the run starts) in a temporary directory; pytest runs there as a subprocess
with ``PYTHONPATH`` on the copy, so the copy's ``rttm`` and ``rttm_emit`` shadow the editable
installs, and ``-m "not integration"``, so no test needs a server (but for ``SERVER_TESTS``, run
against one PostgreSQL the tool starts). Before the mutants of a module, the
unmutated baseline must pass and a self-check mutant (a ``raise`` appended to the module)
must fail naming its marker, or the run stops. A mutant is killed when pytest fails, timed
out (and counted as killed) after max(10 s, 3 times the baseline's time). Each run starts
without Hypothesis's example database (a failure saved by one mutant is not replayed on
the next) and with the mutated module's bytecode removed (its size may not change).

Kill rate = (killed + timed out) / (mutants - documented equivalents). Survivors listed in
the table under ``## Equivalent mutants`` in ``docs/guarantees.md`` (first cell: the id in
backticks) are reported as equivalent, not as survivors; a listed id of a mutated module
that no longer survives is reported as stale.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import importlib.metadata
import itertools
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

REPO = Path(__file__).resolve().parents[1]
#: The one place mapping a module to its fast tests (``--tests`` overrides; a module not
#: here gets every fast test). Checked with grep: the non-integration test files that
#: exercise the module. test_metrics_engine.py also reaches the sketch, the alert engine
#: and the decoder, but takes 6 s a run and killed none of their survivors: left out.
FAST_TESTS: dict[str, tuple[str, ...]] = {
    "rttm/core/decode.py": (
        "tests/test_contracts.py",
        "tests/test_contract_properties.py",
        "tests/test_chunks.py",
        "tests/test_registry.py",
        "tests/test_simulator.py",
    ),
    "rttm/ingest/dedupe.py": ("tests/test_dedupe.py",),
    "rttm/alerts/engine.py": ("tests/test_alert_engine.py", "tests/test_alert_rules.py"),
    "rttm/metrics/sketch.py": ("tests/test_metrics_parts.py",),
    "rttm/ops/health.py": ("tests/test_health.py", "tests/test_ingest_prometheus.py"),
    "rttm/ops/cluster.py": ("tests/test_cluster.py",),
    "rttm/core/logs.py": ("tests/test_logs.py",),
    "rttm/ops/supervisor.py": ("tests/test_supervisor.py",),
    "rttm/alerts/templates.py": ("tests/test_alert_templates.py", "tests/test_alert_rules.py"),
    "rttm/alerts/receivers.py": ("tests/test_alert_templates.py",),
    "rttm/alerts/notifications.py": ("tests/test_alert_notifications.py",),
    # The sender's tests need PostgreSQL and start an Alertmanager each: about 30 s a run.
    "rttm/alerts/sender.py": ("tests/test_alert_delivery.py",),
    # The writer's code runs only against PostgreSQL: its own tests, 3 s with a server.
    "rttm/ingest/writer.py": ("tests/test_writer.py",),
}
#: Test files marked ``integration`` that are quick enough to run per mutant. A run with one
#: of them starts one PostgreSQL for all its workers (``RTTM_TEST_DATABASE_URL``; each test
#: makes its own database, and starts its own broker if it needs one) and selects
#: ``-m "not slow"`` instead of ``"not integration"``.
SERVER_TESTS = frozenset({"tests/test_writer.py", "tests/test_alert_delivery.py"})
ALL_FAST_TESTS = ("tests",)
#: What the tests import or read, copied into each worker's private tree.
COPIED = (
    "rttm",
    "rttm-emit",
    "dataflows",
    "tests",
    "support",
    "sql",
    "pyproject.toml",
    "README.md",
)
GUARANTEES = "docs/guarantees.md"
PYTEST_OPTIONS = ("-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0")
NO_TESTS_COLLECTED = 5  # pytest's exit status
MIN_TIMEOUT_S = 10.0
BASELINE_TIMEOUT_S = 900.0
TIMEOUT_FACTOR = 3.0
SELF_CHECK = "rttm-mutate-self-check"
FRAGMENT_CHARS = 28

_COMPARE_SYMBOL: dict[type[ast.cmpop], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
_COMPARE_FLIPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt, ast.GtE),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}
#: Comparisons whose flip is their negation.
_SELF_INVERSE = frozenset({ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is, ast.IsNot})
_ARITHMETIC: dict[type[ast.operator], tuple[str, type[ast.operator], str]] = {
    ast.Add: ("+", ast.Sub, "-"),
    ast.Sub: ("-", ast.Add, "+"),
    ast.Mult: ("*", ast.Div, "/"),
    ast.Div: ("/", ast.Mult, "*"),
}
_LOG_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
)
_LOGGER = re.compile(r"_?(log|logger|logging)", re.IGNORECASE)
_GENERIC_TYPES = frozenset(
    {"tuple", "list", "dict", "set", "frozenset", "type", "Literal", "Callable", "Union"}
)


class UsageError(Exception):
    """Bad arguments: reported in one line, exit status 2."""


class ToolError(Exception):
    """The tool cannot give a trustworthy result (baseline or isolation broken): exit 1."""


@dataclass(frozen=True)
class Mutant:
    """One changed spot of a module: its id and the whole mutated source."""

    id: str
    line: int
    original_line: str
    mutated_line: str
    source: str
    scopes: tuple[str, ...]  # enclosing function and class names, outermost first


@dataclass(frozen=True)
class _Candidate:
    node: ast.expr | ast.stmt  # the node replaced (a node of the original tree)
    replacement: ast.AST
    description: str
    scopes: tuple[str, ...]


# --- mutant generation -------------------------------------------------------------------


def _fragment(text: str) -> str:
    """``text`` on one line, cut to a few words: the readable part of an id."""
    flat = " ".join(text.split())
    return flat if len(flat) <= FRAGMENT_CHARS else flat[: FRAGMENT_CHARS - 1].rstrip() + "…"


def _negated(test: ast.expr) -> ast.expr:
    """``not test``, or the operand of a ``not`` rather than a double negation."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand
    return ast.UnaryOp(op=ast.Not(), operand=test)


def _number(value: float) -> ast.expr:
    """A literal as the parser builds it: a negative number is ``-`` applied to a constant."""
    if value < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(-value))
    return ast.Constant(value)


def _is_string(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and isinstance(test.ops[0], ast.Eq)
    )


def _is_logging_call(stmt: ast.stmt) -> bool:
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in _LOG_METHODS
        and isinstance(func.value, ast.Name)
        and _LOGGER.fullmatch(func.value.id) is not None
    )


def _is_type_alias(stmt: ast.stmt) -> bool:
    """``X: TypeAlias = …`` or ``X = tuple[…]``-like: only annotations would miss it."""
    if isinstance(stmt, ast.AnnAssign):
        annotation = stmt.annotation
        name = annotation.attr if isinstance(annotation, ast.Attribute) else None
        if isinstance(annotation, ast.Name):
            name = annotation.id
        return name == "TypeAlias"
    if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Subscript):
        generic = stmt.value.value
        return isinstance(generic, ast.Name) and generic.id in _GENERIC_TYPES
    return False


def _skipped_statement(stmt: ast.stmt) -> bool:
    """Statements left alone whole: neither deleted nor mutated inside."""
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.Assert | ast.Global | ast.Nonlocal):
        return True
    if isinstance(stmt, ast.If) and (_is_type_checking(stmt.test) or _is_main_guard(stmt.test)):
        return True
    if isinstance(stmt, ast.Raise):
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "AssertionError"
    return _is_logging_call(stmt) or _is_type_alias(stmt)


def _undeletable(stmt: ast.stmt) -> bool:
    """Statements whose deletion is no mutant worth running (the subtree may still be)."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True  # docstrings, other bare strings, ``...``
    return isinstance(stmt, ast.AnnAssign) and stmt.value is None  # a declaration


def _raise_messages(tree: ast.AST) -> set[int]:
    """Ids of ``msg = …`` statements reported by the ``raise`` right after them."""
    found: set[int] = set()
    for node in ast.walk(tree):
        for _, body in ast.iter_fields(node):
            if not (isinstance(body, list) and body and isinstance(body[0], ast.stmt)):
                continue
            for stmt, after in itertools.pairwise(body):
                if (
                    isinstance(stmt, ast.Assign)
                    and isinstance(after, ast.Raise)
                    and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                    and any(
                        isinstance(n, ast.Name) and n.id == stmt.targets[0].id
                        for n in ast.walk(after)
                    )
                ):
                    found.add(id(stmt))
    return found


class _Collector(ast.NodeVisitor):
    """Walks a module in source order and collects the candidate mutations."""

    def __init__(self, source: _Source, tree: ast.Module) -> None:
        self.found: list[_Candidate] = []
        self._source = source
        self._scopes: list[str] = []
        self._quiet = _raise_messages(tree)
        # Not deleted: a function's last ``return X`` (that is the ``return None`` mutant)
        # and ``elif`` branches (no text replacement deletes one; their statements are).
        self._kept = {
            id(node.body[-1])
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and isinstance(node.body[-1], ast.Return)
        }

    def _add(self, node: ast.expr | ast.stmt, replacement: ast.AST, description: str) -> None:
        self.found.append(_Candidate(node, replacement, description, tuple(self._scopes)))

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.stmt):
            if id(node) in self._quiet or _skipped_statement(node):
                return
            if not _undeletable(node) and id(node) not in self._kept:
                self._add(node, ast.Pass(), "delete statement")
        super().visit(node)

    def _visit_all(self, nodes: Sequence[ast.AST | None]) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node)

    def _visit_definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # Annotations (of the arguments and the return) are not visited.
        self._visit_all(node.decorator_list)
        self._visit_all(node.args.defaults)
        self._visit_all(node.args.kw_defaults)
        self._scopes.append(node.name)
        self._visit_all(node.body)
        self._scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_definition(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_definition(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._visit_all(node.decorator_list)
        self._visit_all(node.bases)
        self._visit_all(node.keywords)
        self._scopes.append(node.name)
        self._visit_all(node.body)
        self._scopes.pop()

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._visit_all([node.target, node.value])  # not the annotation

    def visit_Raise(self, node: ast.Raise) -> None:
        pass  # the exception and its message: deleting the raise is the mutant

    def visit_Compare(self, node: ast.Compare) -> None:
        for n, op in enumerate(node.ops):
            for flip in _COMPARE_FLIPS[type(op)]:
                ops = [*node.ops[:n], flip(), *node.ops[n + 1 :]]
                mutated = ast.Compare(left=node.left, ops=ops, comparators=node.comparators)
                symbols = _COMPARE_SYMBOL[type(op)], _COMPARE_SYMBOL[flip]
                self._add(node, mutated, "{}→{}".format(*symbols))
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        swapped, description = (
            (ast.Or(), "and→or") if isinstance(node.op, ast.And) else (ast.And(), "or→and")
        )
        self._add(node, ast.BoolOp(op=swapped, values=node.values), description)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        swap = _ARITHMETIC.get(type(node.op))
        if swap and not (_is_string(node.left) or _is_string(node.right)):
            mutated = ast.BinOp(left=node.left, op=swap[1](), right=node.right)
            self._add(node, mutated, f"{swap[0]}→{swap[2]}")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        swap = _ARITHMETIC.get(type(node.op))
        if swap and not _is_string(node.value):
            mutated = ast.AugAssign(target=node.target, op=swap[1](), value=node.value)
            self._add(node, mutated, f"{swap[0]}=→{swap[2]}=")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        segment = self._source.segment(node)
        if isinstance(value, int):
            changed: tuple[float, ...] = (value + 1, value - 1)
        else:
            changed = (value * 2, value / 2) if value else (1.0,)
        for new in changed:
            self._add(node, _number(new), f"{segment}→{new!r}")

    def _negate(self, node: ast.If | ast.While | ast.IfExp, keyword: str) -> None:
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and type(test.ops[0]) in _SELF_INVERSE
        ):
            return  # the comparison flip is this very mutant
        self._add(test, _negated(test), f"negate {keyword}")

    def visit_If(self, node: ast.If) -> None:
        if len(node.orelse) == 1 and self._source.segment(node.orelse[0]).startswith("elif"):
            self._kept.add(id(node.orelse[0]))
        self._negate(node, "if")
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._negate(node, "while")
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._negate(node, "ternary")
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, bool):
            new = not value.value
            self._add(value, ast.Constant(new), f"return {value.value}→return {new}")
        elif value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            text = _fragment(self._source.segment(value))
            self._add(value, ast.Constant(None), f"return {text}→return None")
        self.generic_visit(node)


class _Source:
    """A module's text with byte offsets of its lines (``ast`` columns count UTF-8 bytes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode()
        self.starts = [0]
        for line in self.data.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def span(self, node: ast.expr | ast.stmt) -> tuple[int, int]:
        """Byte offsets of ``node``'s source."""
        end_line, end_col = node.end_lineno or node.lineno, node.end_col_offset or 0
        return self.starts[node.lineno - 1] + node.col_offset, self.starts[end_line - 1] + end_col

    def segment(self, node: ast.expr | ast.stmt) -> str:
        start, end = self.span(node)
        return self.data[start:end].decode()

    def replaced(self, node: ast.expr | ast.stmt, text: str) -> str:
        start, end = self.span(node)
        return (self.data[:start] + text.encode() + self.data[end:]).decode()


#: Node id → its parent, the field holding it and its index in that field's list.
_Parents = dict[int, tuple[ast.AST, str, int | None]]


def _parents(tree: ast.AST) -> _Parents:
    """Where each node of ``tree`` is held."""
    found: _Parents = {}
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if isinstance(value, ast.AST):
                found[id(value)] = (parent, name, None)
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        found[id(item)] = (parent, name, index)
    return found


@contextlib.contextmanager
def _swapped(parents: _Parents, node: ast.expr | ast.stmt, replacement: ast.AST) -> Iterator[None]:
    """The tree with ``node`` replaced by ``replacement`` for the ``with`` block."""
    parent, name, index = parents[id(node)]
    if index is None:
        setattr(parent, name, replacement)
    else:
        getattr(parent, name)[index] = replacement
    try:
        yield
    finally:
        if index is None:
            setattr(parent, name, node)
        else:
            getattr(parent, name)[index] = node


def _mutated_source(
    source: _Source, tree: ast.Module, parents: _Parents, candidate: _Candidate
) -> str | None:
    """The text of ``candidate`` applied to ``source``, if it parses to the mutated tree."""
    with _swapped(parents, candidate.node, candidate.replacement):
        expected = ast.dump(tree)
    text = ast.unparse(candidate.replacement)
    tries = [text] if isinstance(candidate.replacement, ast.stmt) else [text, f"({text})"]
    for attempt in tries:
        mutated = source.replaced(candidate.node, attempt)
        try:
            if ast.dump(ast.parse(mutated)) == expected:
                compile(mutated, "<mutant>", "exec")
                return mutated
        except (SyntaxError, ValueError):
            continue
    return None


def _line(text: str, number: int) -> str:
    """Line ``number`` of ``text`` as ``ast`` counts lines, stripped."""
    return re.split(r"\r\n|\r|\n", text)[number - 1].strip()


def generate(path: str, text: str) -> list[Mutant]:
    """Every mutant of the module ``path`` (its id's prefix) whose source is ``text``."""
    source = _Source(text)
    tree = ast.parse(text)
    parents = _parents(tree)
    collector = _Collector(source, tree)
    collector.visit(tree)
    order = {id(c): n for n, c in enumerate(collector.found)}
    candidates = sorted(
        collector.found, key=lambda c: (c.node.lineno, c.node.col_offset, order[id(c)])
    )
    mutants: list[Mutant] = []
    seen_ids: dict[str, int] = {}
    seen_sources: set[str] = set()
    for candidate in candidates:
        mutated = _mutated_source(source, tree, parents, candidate)
        if mutated is None or mutated in seen_sources:
            continue
        seen_sources.add(mutated)
        line = candidate.node.lineno
        base = f"{path}:{line} {candidate.description}"
        seen_ids[base] = seen_ids.get(base, 0) + 1
        mutant_id = base if seen_ids[base] == 1 else f"{base} #{seen_ids[base]}"
        mutants.append(
            Mutant(
                id=mutant_id,
                line=line,
                original_line=_line(text, line),
                mutated_line=_line(mutated, line),
                source=mutated,
                scopes=candidate.scopes,
            )
        )
    return mutants


def scope_names(text: str) -> set[str]:
    """Names of every function and class of a module (what ``--only`` may name)."""
    return {
        node.name
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def restricted(mutants: list[Mutant], only: frozenset[str]) -> list[Mutant]:
    """The mutants inside a function or class named in ``only`` (all when it is empty)."""
    return [m for m in mutants if not only or only.intersection(m.scopes)]


def documented_equivalents(markdown: str) -> list[str]:
    """Mutant ids from the table under ``## Equivalent mutants`` (first cell, in backticks)."""
    ids: list[str] = []
    inside = False
    for line in markdown.splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Equivalent mutants"
            continue
        cell = re.match(r"\|\s*`([^`]+)`\s*\|", line) if inside else None
        if cell:
            ids.append(cell.group(1))
    return ids


# --- running -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One pytest run: its exit status (None: timed out), its time and its output."""

    status: int | None
    seconds: float
    output: str

    def failures(self) -> list[str]:
        """The ``FAILED``/``ERROR`` lines of pytest's short summary."""
        return [line for line in self.output.splitlines() if line.startswith(("FAILED ", "ERROR "))]


@dataclass
class Workspace:
    """A private copy of the repository for one worker: the mutant is written there."""

    root: Path
    database_url: str | None = None  # RTTM_TEST_DATABASE_URL, when tests need PostgreSQL
    running: set[subprocess.Popen[bytes]] = field(default_factory=set)
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, base: Path, database_url: str | None = None) -> Workspace:
        """Copy what the tests need into ``base``."""
        ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "artifacts", "*.tmp")
        for name in COPIED:
            origin = REPO / name
            if origin.is_dir():
                shutil.copytree(origin, base / name, ignore=ignore)
            elif origin.exists():
                shutil.copy2(origin, base / name)
        return cls(base, database_url)

    def write(self, module: str, text: str) -> None:
        """Put ``text`` in place of ``module`` and drop its bytecode (which could be stale)."""
        target = self.root / module
        target.write_text(text)
        for cached in (target.parent / "__pycache__").glob(f"{target.stem}.*.pyc"):
            cached.unlink()

    def pytest(
        self, tests: Sequence[str], timeout: float | None, *, bytecode: bool = False
    ) -> Outcome:
        """Run ``tests`` in this copy (``rttm`` imported from it), killed after ``timeout``."""
        shutil.rmtree(self.root / ".hypothesis", ignore_errors=True)  # no replayed examples
        env = dict(os.environ)
        copies = [str(self.root), str(self.root / "rttm-emit" / "src")]  # rttm and rttm_emit
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*copies, os.environ.get("PYTHONPATH")]))
        marker = "not integration"
        if self.database_url is not None and SERVER_TESTS.intersection(tests):
            env["RTTM_TEST_DATABASE_URL"] = self.database_url
            marker = "not slow"
        if bytecode:  # compiles the original modules once
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        else:  # the copy's bytecode stays that of the original modules
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        command = [
            sys.executable,
            "-m",
            "pytest",
            *PYTEST_OPTIONS,
            "-m",
            marker,
            *_randomly_off(),
            f"--basetemp={self.root / '.pytest-tmp'}",
            *tests,
        ]
        started = time.monotonic()
        with self.lock:
            if self.stopped:
                raise KeyboardInterrupt
            process = subprocess.Popen(
                command,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a timeout kills the whole process group
            )
            self.running.add(process)
        try:
            output, _ = process.communicate(timeout=timeout)
            status: int | None = process.returncode
        except subprocess.TimeoutExpired:
            _kill(process)
            output, _ = process.communicate()
            status = None
        finally:
            with self.lock:
                self.running.discard(process)
        return Outcome(status, time.monotonic() - started, output.decode(errors="replace"))

    def stop(self) -> None:
        """Kill the run going and start no other (on Ctrl-C)."""
        with self.lock:
            self.stopped = True
            for process in self.running:
                _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` and what it started (its own process group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _randomly_off() -> list[str]:
    """``-p no:randomly`` when pytest-randomly is installed (pytest refuses it otherwise)."""
    try:
        importlib.metadata.version("pytest-randomly")
    except importlib.metadata.PackageNotFoundError:
        return []
    return ["-p", "no:randomly"]


Verdict = Literal["killed", "timeout", "survived"]


@dataclass(frozen=True)
class Result:
    """What the tests did with one mutant."""

    mutant: Mutant
    verdict: Verdict
    seconds: float


def _baseline(workspaces: Sequence[Workspace], module: str, tests: Sequence[str]) -> float:
    """Check the unmutated module passes and that the copy is what the tests import.

    Returns the baseline's time. The baseline runs in every copy (which also compiles its
    bytecode once); the self-check appends a ``raise`` to the module in one copy, which the
    tests must fail on, naming the marker: else they do not import the copy's module.
    """
    # The pool's exit waits for its runs: they are killed first on an error.
    with (
        concurrent.futures.ThreadPoolExecutor(len(workspaces)) as pool,
        _stopped_on_error(workspaces),
    ):
        outcomes = list(pool.map(_warm_run(tests), workspaces))
    for outcome in outcomes:
        if outcome.status is None:
            msg = f"the unmutated baseline ({' '.join(tests)}) ran over {BASELINE_TIMEOUT_S:.0f} s"
            raise ToolError(msg)
        if outcome.status == NO_TESTS_COLLECTED:
            msg = (
                f"no test of {' '.join(tests)} is selected (integration tests run per mutant "
                "only from SERVER_TESTS in tests/mutate.py)"
            )
            raise ToolError(msg)
        if outcome.status != 0:
            failing = "; ".join(outcome.failures()) or _tail(outcome.output)
            msg = f"the unmutated baseline fails ({' '.join(tests)}): {failing}"
            raise ToolError(msg)
    baseline = max(outcome.seconds for outcome in outcomes)
    original = (REPO / module).read_text()
    check = workspaces[0]
    check.write(module, f'{original}\nraise RuntimeError("{SELF_CHECK}")\n')
    try:
        with _stopped_on_error(workspaces):
            checked = check.pytest(tests, _timeout(baseline))
    finally:
        check.write(module, original)
    if checked.status == 0 or SELF_CHECK not in checked.output:
        msg = (
            f"isolation self-check failed: with {module} raising at import in the copy, the "
            f"tests {'passed' if checked.status == 0 else 'failed for another reason'}: "
            "they do not import the copy's module (PYTHONPATH?) or not this module at all"
        )
        raise ToolError(msg)
    return baseline


def _timeout(baseline: float) -> float:
    return max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * baseline)


@contextlib.contextmanager
def _stopped_on_error(
    workspaces: Sequence[Workspace], futures: Sequence[concurrent.futures.Future[Result]] = ()
) -> Iterator[None]:
    """On an error (Ctrl-C), cancel ``futures`` and kill the runs before leaving the block."""
    try:
        yield
    except BaseException:
        for future in futures:
            future.cancel()
        for workspace in workspaces:
            workspace.stop()
        raise


def _warm_run(tests: Sequence[str]) -> Callable[[Workspace], Outcome]:
    """A baseline run in a workspace, writing the bytecode of the original modules."""
    return lambda workspace: workspace.pytest(tests, BASELINE_TIMEOUT_S, bytecode=True)


def _tail(output: str, lines: int = 15) -> str:
    return "\n" + "\n".join(output.splitlines()[-lines:])


def run_module(
    workspaces: Sequence[Workspace],
    module: str,
    mutants: Sequence[Mutant],
    tests: Sequence[str],
    progress: Callable[[str], None],
) -> list[Result]:
    """Run ``tests`` against each mutant, one worker per workspace; results in mutant order."""
    baseline = _baseline(workspaces, module, tests)
    timeout = _timeout(baseline)
    progress(
        f"{module}: baseline passes in {baseline:.1f} s, self-check killed; "
        f"{len(mutants)} mutants, timeout {timeout:.0f} s, {len(workspaces)} worker(s)"
    )
    original = (REPO / module).read_text()
    free: queue.Queue[Workspace] = queue.Queue()
    for workspace in workspaces:
        free.put(workspace)
    done = 0
    lock = threading.Lock()

    def run(mutant: Mutant) -> Result:
        nonlocal done
        workspace = free.get()
        try:
            workspace.write(module, mutant.source)
            outcome = workspace.pytest(tests, timeout)
        finally:
            workspace.write(module, original)
            free.put(workspace)
        verdict: Verdict = "survived" if outcome.status == 0 else "killed"
        if outcome.status is None:
            verdict = "timeout"
        with lock:
            done += 1
            progress(f"[{done}/{len(mutants)}] {verdict:<8} {outcome.seconds:5.1f} s  {mutant.id}")
        return Result(mutant, verdict, outcome.seconds)

    with concurrent.futures.ThreadPoolExecutor(len(workspaces)) as pool:
        futures = [pool.submit(run, mutant) for mutant in mutants]
        with _stopped_on_error(workspaces, futures):
            return [future.result() for future in futures]


# --- report ------------------------------------------------------------------------------


def report(
    module: str,
    results: Sequence[Result],
    equivalents: Sequence[str],
    all_ids: set[str],
    seconds: float,
) -> list[str]:
    """The summary lines of one module: counts, kill rate, survivors, stale equivalents."""
    listed = set(equivalents)
    killed = sum(r.verdict == "killed" for r in results)
    timed_out = sum(r.verdict == "timeout" for r in results)
    survivors = [r for r in results if r.verdict == "survived" and r.mutant.id not in listed]
    equivalent = [r for r in results if r.verdict == "survived" and r.mutant.id in listed]
    counted = len(results) - len(equivalent)
    rate = 100.0 * (killed + timed_out) / counted if counted else 100.0
    lines = [
        f"{module}: {len(results)} mutants, {killed} killed, {timed_out} timed out, "
        f"{len(survivors)} survived, {len(equivalent)} equivalent (documented), "
        f"kill rate {rate:.1f} % ({seconds:.0f} s)"
    ]
    for result in survivors:
        lines += [
            f"  survived: {result.mutant.id}",
            f"      - {result.mutant.original_line}",
            f"      + {result.mutant.mutated_line}",
        ]
    lines += [f"  equivalent (documented): {r.mutant.id}" for r in equivalent]
    run = {r.mutant.id: r.verdict for r in results}
    for mutant_id in equivalents:
        if not mutant_id.startswith(f"{module}:"):
            continue
        if mutant_id not in all_ids:
            lines.append(f"  stale equivalent entry (no such mutant): {mutant_id}")
        elif run.get(mutant_id, "survived") != "survived":
            lines.append(f"  stale equivalent entry (now {run[mutant_id]}): {mutant_id}")
    return lines


# --- command line ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(
        prog="./dev mutate",
        description="Mutation testing of MODULE… over its fast tests (see tests/mutate.py).",
    )
    parser.add_argument("modules", nargs="+", metavar="MODULE", help="e.g. rttm/core/decode.py")
    parser.add_argument("--tests", nargs="+", metavar="PATH", help="test files to run instead")
    parser.add_argument(
        "--only", default="", metavar="NAME,…", help="only inside these functions or classes"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, metavar="N", help="default: CPUs"
    )
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    return parser.parse_args(argv)


def _repo_path(name: str, *, what: str) -> str:
    """``name`` (relative to the repository or the working directory) as a repository path."""
    path = Path(name)
    for candidate in (REPO / path, Path.cwd() / path):
        if candidate.exists():
            with contextlib.suppress(ValueError):
                return candidate.resolve().relative_to(REPO).as_posix()
    msg = f"{what} {name} not found in {REPO}"
    raise UsageError(msg)


def _interrupted(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Generate, run and report; 0 unless the tool itself failed."""
    signal.signal(signal.SIGTERM, _interrupted)  # cleaned up like Ctrl-C
    try:
        return _main(_arguments(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        print(f"mutate: error: {exc}", file=sys.stderr)
        return 2
    except ToolError as exc:
        print(f"mutate: aborted: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mutate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # ``--list | head``
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(args: argparse.Namespace) -> int:
    modules = [_repo_path(name, what="module") for name in args.modules]
    for module in modules:
        if not module.endswith(".py"):
            msg = f"module {module} is not a .py file"
            raise UsageError(msg)
    tests = [_repo_path(t, what="test path") for t in args.tests] if args.tests else None
    only = frozenset(name for name in args.only.split(",") if name)
    if args.jobs < 1:
        msg = "--jobs must be at least 1"
        raise UsageError(msg)
    texts = {module: (REPO / module).read_text() for module in modules}
    for module, text in texts.items():
        try:
            ast.parse(text)
        except SyntaxError as exc:
            msg = f"module {module} does not parse: {exc}"
            raise UsageError(msg) from None
    known = set().union(*(scope_names(text) for text in texts.values()))
    if unknown := sorted(only - known):
        msg = f"--only: no function or class named {', '.join(unknown)} in {' '.join(modules)}"
        raise UsageError(msg)
    every = {module: generate(module, texts[module]) for module in modules}
    chosen = {module: restricted(every[module], only) for module in modules}
    if args.list:
        for module in modules:
            print(f"{module}: {len(chosen[module])} mutants")
            for mutant in chosen[module]:
                print(f"{mutant.id}\t{mutant.mutated_line}")
        return 0
    guarantees = REPO / GUARANTEES
    equivalents = documented_equivalents(guarantees.read_text()) if guarantees.exists() else []
    started = time.monotonic()
    summary: list[str] = []
    run_tests = {
        module: tests or list(FAST_TESTS.get(module, ALL_FAST_TESTS)) for module in modules
    }
    with (
        tempfile.TemporaryDirectory(prefix="rttm-mutate-") as temp,
        _postgres(
            Path(temp), any(SERVER_TESTS.intersection(t) for t in run_tests.values())
        ) as database_url,
    ):
        workspaces = []
        for n in range(args.jobs):
            (Path(temp) / str(n)).mkdir()
            workspaces.append(Workspace.create(Path(temp) / str(n), database_url))
        for module in modules:
            module_started = time.monotonic()
            results = run_module(workspaces, module, chosen[module], run_tests[module], _progress)
            all_ids = {mutant.id for mutant in every[module]}
            seconds = time.monotonic() - module_started
            summary += report(module, results, equivalents, all_ids, seconds)
    elapsed = time.monotonic() - started
    print("\n".join([*summary, f"done in {elapsed:.0f} s ({args.jobs} worker(s))"]))
    return 0


@contextlib.contextmanager
def _postgres(state: Path, needed: bool) -> Iterator[str | None]:
    """A PostgreSQL for the run's tests that need one (the superuser URL), else None."""
    if not needed:
        yield None
        return
    if url := os.environ.get("RTTM_TEST_DATABASE_URL"):
        yield url
        return
    from rttm.stack.pgdata import purge_under
    from rttm.stack.postgres import start_postgres
    from rttm.stack.processes import free_port
    from tests.conftest import TEST_POSTGRES_SETTINGS

    _progress("starting a PostgreSQL for the tests that need one")
    server = start_postgres(state / "postgres", free_port(), TEST_POSTGRES_SETTINGS)
    try:
        yield server.url("postgres")
    finally:
        server.stop()
        purge_under(state / "postgres")  # as root the data lives under /var/lib/rttm-postgres


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
