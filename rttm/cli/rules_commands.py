"""``rttm rules``: check alert-rules files, run their unit tests, export them for Prometheus."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rttm.alerts import prometheus_rules, rule_tests, rules
from rttm.cli import Subcommands, add_command, say
from rttm.core.errors import RttmError
from rttm.metrics import settings as metrics_settings
from rttm.metrics.settings import ENV_ALERT_RULES

DEFAULT_RULES = "the shipped default rules"


def register(commands: Subcommands) -> None:
    """Add ``rttm rules check|test [FILE...]`` and ``rttm rules export --prometheus OUT``."""
    parser = commands.add_parser(
        "rules",
        help="check alert rules, run their tests, export them",
        description="Check alert-rules files, run their unit tests, and export them as "
        "Prometheus alerting rules. `rttm rules ACTION --help` tells more.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = add_command(
        actions,
        "check",
        help="report every problem of rules files (default: the shipped rules)",
        description="Prints `FILE: N rules OK`, or each problem as `FILE:LINE: message`; "
        "exits 1 if any file has a problem.",
    )
    check.add_argument("files", nargs="*", type=Path, metavar="FILE")
    check.set_defaults(run=_check)
    test = add_command(
        actions,
        "test",
        help="run rule unit tests, like promtool test rules (default: the shipped tests)",
        description="Feeds each test file's series through its rules window by window and "
        "compares the pending and firing alerts with its [[expect]] tables; exits 1 on a failure. "
        "Series values use promtool's notation: `_` absent, `_xN` absent N windows, `VxN` V "
        "then N more (N+1 values), `a+bxN` a then N steps of +b (N+1 values).",
    )
    test.add_argument("files", nargs="*", type=Path, metavar="FILE")
    test.set_defaults(run=_test)
    export = add_command(
        actions,
        "export",
        help="write the rules as Prometheus alerting rules over rttm serve's /metrics",
        description="Writes RULES (default: $RTTM_ALERT_RULES, else the shipped rules) as a "
        "Prometheus rules file, for a Prometheus that scrapes `rttm serve`. A rule Prometheus "
        "cannot evaluate as RTTM does is exported as its nearest equivalent, with a comment.",
    )
    export.add_argument(
        "--prometheus",
        type=Path,
        required=True,
        metavar="OUT",
        help="the file to write ('-': standard output)",
    )
    export.add_argument("rules", nargs="?", type=Path, metavar="RULES")
    export.set_defaults(run=_export)


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


def _export(args: argparse.Namespace) -> int:
    source: Path | None = args.rules
    if source is None and os.environ.get(ENV_ALERT_RULES, "").strip():
        source = Path(os.environ[ENV_ALERT_RULES].strip())
    found = rules.load_rules(source)
    text = prometheus_rules.export(
        found, str(source) if source else DEFAULT_RULES, metrics_settings.window_s()
    )
    if str(args.prometheus) == "-":
        sys.stdout.write(text)
        return 0
    try:
        args.prometheus.write_text(text, encoding="utf-8")
    except OSError as exc:
        msg = f"cannot write {args.prometheus}: {exc.strerror}"
        raise RttmError(msg) from None
    say(
        f"wrote {len(found)} rules to {args.prometheus} (check: promtool check rules "
        f"{args.prometheus})"
    )
    return 0
