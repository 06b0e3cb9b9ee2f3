"""``rttm rules``: check alert-rules files and run their unit tests."""

from __future__ import annotations

import argparse
from pathlib import Path

from rttm.alerts import rule_tests, rules
from rttm.cli import Subcommands

DEFAULT_RULES = "the shipped default rules"


def register(commands: Subcommands) -> None:
    """Add ``rttm rules check [FILE...]`` and ``rttm rules test [FILE...]``."""
    parser = commands.add_parser("rules", help="check alert rules and run their tests")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="report every problem of rules files (default: the shipped rules)",
        description="Prints `FILE: N rules OK`, or each problem as `FILE:LINE: message`; "
        "exits 1 if any file has a problem.",
    )
    check.add_argument("files", nargs="*", type=Path, metavar="FILE")
    check.set_defaults(run=_check)
    test = actions.add_parser(
        "test",
        help="run rule unit tests, like promtool test rules (default: the shipped tests)",
        description="Feeds each test file's series through its rules window by window and "
        "compares the pending and firing alerts with its [[expect]] tables; exits 1 on a failure.",
    )
    test.add_argument("files", nargs="*", type=Path, metavar="FILE")
    test.set_defaults(run=_test)


def _check(args: argparse.Namespace) -> int:
    targets: list[tuple[str, Path]] = [(str(path), path) for path in args.files]
    if not targets:
        targets.append((DEFAULT_RULES, rules.default_rules_path()))
    status = 0
    for name, path in targets:
        found, problems = rules.parse_text(rules.read_rules_text(path))
        if problems:
            status = 1
            for problem in problems:
                print(f"{path}:{problem.line}: {problem.message}")
        else:
            noun = "rule" if len(found) == 1 else "rules"
            print(f"{name}: {len(found)} {noun} OK")
    return status


def _test(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files or [rule_tests.default_tests_path()]:
        failures = rule_tests.run_tests(path)
        for failure in failures:
            print(failure)
        if failures:
            status = 1
            print(f"{path}: FAIL ({len(failures)} failed)")
        else:
            print(f"{path}: PASS")
    return status
