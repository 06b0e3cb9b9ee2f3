"""``rttm trace`` / ``status`` / ``alerts``: what an operator looks at, in the terminal.

Tables in a terminal, plain text when piped, ``--json`` for scripts; ``--watch`` redraws
every ``--interval`` seconds until Ctrl-C. ``rttm alerts silence`` creates a silence in
Alertmanager.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from rich.console import Console

from rttm.alerts import receivers, silences
from rttm.alerts.rules import LABEL_NAME
from rttm.cli import Subcommands, add_command, say, screens
from rttm.core import config
from rttm.core.db.connect import DictConn
from rttm.core.durations import format_duration, parse_positive_duration
from rttm.core.errors import RttmError
from rttm.metrics.settings import pipeline_from_env
from rttm.views import alerts, limits, status, trace
from rttm.views.common import open_view, query_failed

WATCH_INTERVAL_S = 2.0
T = TypeVar("T", int, float)


def bounded(kind: Callable[[str], T], low: T, high: T) -> Callable[[str], T]:
    """An argparse type: ``kind`` of the text, refused outside ``low``..``high``."""

    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            msg = f"not a number: {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if not low <= value <= high:
            msg = f"must be from {low} to {high}, got {text}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument(
        "--interval",
        type=bounded(float, 0.5, 3600),
        default=WATCH_INTERVAL_S,
        metavar="S",
        help=f"seconds between refreshes (default {WATCH_INTERVAL_S:g})",
    )


def _max_entries(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-entries",
        type=bounded(int, *limits.MAX_ENTRIES_RANGE),
        metavar="N",
        help="entries per section, the worst first; the rest are counted ('and N more') "
        f"(default ${limits.ENV_MAX_ENTRIES} or {limits.DEFAULT_MAX_ENTRIES})",
    )


def register(commands: Subcommands) -> None:
    """Add ``rttm trace``, ``rttm status`` and ``rttm alerts``."""
    trace_cmd = add_command(
        commands,
        "trace",
        help="one trade's timeline across services",
        description="Every event of TRADE_ID in time order, across the services of the "
        "pipeline, with the time spent in each hop; --before pages to older events.",
    )
    trace_cmd.add_argument("trade_id", metavar="TRADE_ID")
    trace_cmd.add_argument(
        "--limit",
        type=bounded(int, 1, trace.MAX_LIMIT),
        default=trace.DEFAULT_LIMIT,
        help=f"events shown, the newest (default {trace.DEFAULT_LIMIT}, at most {trace.MAX_LIMIT})",
    )
    trace_cmd.add_argument(
        "--before", metavar="CURSOR", help="the older page that the last line names"
    )
    _common(trace_cmd)
    trace_cmd.set_defaults(run=_trace)
    status_cmd = add_command(
        commands,
        "status",
        help="TPS, consumers and lag, DLQ, errors, stuck trades, alerts",
        description="The state of the platform over the last --minutes: trades per second, "
        "consumers and their lag, dead letters, errors, stuck trades and active alerts, the "
        "worst first.",
    )
    status_cmd.add_argument(
        "--minutes",
        type=bounded(int, 1, 1440),
        default=status.DEFAULT_MINUTES,
        help="period of the averages and counts (default 15)",
    )
    _max_entries(status_cmd)
    _common(status_cmd)
    status_cmd.set_defaults(run=_status)
    alerts_cmd = add_command(
        commands,
        "alerts",
        help="firing and pending alerts, recent changes; silence alerts",
        description="Active alerts with how their notification went (delivered, retrying, "
        "queued, refused, history, not configured) and, with RTTM_ALERTMANAGER_URL set, the "
        "Alertmanager silences muting them; then the latest transitions.",
    )
    alerts_cmd.add_argument(
        "--limit", type=bounded(int, 1, 1000), default=50, help="recent transitions shown (1-1000)"
    )
    _max_entries(alerts_cmd)
    _common(alerts_cmd)
    alerts_cmd.set_defaults(run=_alerts)
    actions = alerts_cmd.add_subparsers(dest="action", metavar="ACTION", required=False)
    silence = add_command(
        actions,
        "silence",
        help="silence a rule's alerts in Alertmanager (RTTM_ALERTMANAGER_URL)",
        description="Creates a silence in Alertmanager for RTTM's alerts of RULE whose labels "
        "equal every LABEL=VALUE given, and prints its id.",
    )
    silence.add_argument("rule", metavar="RULE", help="the rule's name (alertname)")
    silence.add_argument(
        "matchers",
        nargs="*",
        type=_matcher,
        metavar="LABEL=VALUE",
        help="only alerts with this label value",
    )
    silence.add_argument(
        "--for",
        dest="duration",
        type=_duration,
        required=True,
        metavar="D",
        help="how long, such as 30m or 2h",
    )
    silence.add_argument("--comment", required=True, help="why (shown in Alertmanager)")
    silence.add_argument("--author", default=None, help="who (default: the login name)")
    silence.set_defaults(run=_silence)


def _matcher(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not LABEL_NAME.fullmatch(name):
        msg = f"expected LABEL=VALUE with a label name [A-Za-z_][A-Za-z0-9_]*, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return name, value


def _duration(text: str) -> float:
    try:
        return parse_positive_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _show(
    args: argparse.Namespace,
    read: Callable[[DictConn], dict[str, Any] | None],
    screen: Callable[[dict[str, Any]], list[screens.Block]],
) -> int:
    url = config.database_url()
    console = Console()
    while True:
        with open_view(url) as conn:
            try:
                data = read(conn)
            except psycopg.Error as exc:
                raise query_failed(url, exc) from None
        if data is None:
            msg = f"no trade {args.trade_id!r}: no event of it is stored"
            raise RttmError(msg)
        if args.watch and console.is_terminal:
            console.clear()
        if args.json:
            print(json.dumps(data, indent=2), flush=True)
        else:
            screens.render(screen(data))
            sys.stdout.flush()
        if not args.watch:
            return 0
        time.sleep(args.interval)


def _trace(args: argparse.Namespace) -> int:
    stages = pipeline_from_env()
    try:
        before = None if args.before is None else trace.decode_cursor(args.before)
    except trace.BadCursor as exc:
        raise RttmError(str(exc)) from None
    again = f"rttm trace {shlex.quote(args.trade_id)}"
    if args.limit != trace.DEFAULT_LIMIT:
        again += f" --limit {args.limit}"
    return _show(
        args,
        lambda conn: trace.trace(conn, args.trade_id, stages, args.limit, before),
        lambda data: screens.trace_screen(data, again, newest=before is None),
    )


def _status(args: argparse.Namespace) -> int:
    entries = limits.max_entries(args.max_entries)
    return _show(
        args, lambda conn: status.status(conn, args.minutes, entries), screens.status_screen
    )


def _alerts(args: argparse.Namespace) -> int:
    lookup = silences.SilencedLookup(receivers.alertmanagers())
    entries = limits.max_entries(args.max_entries)
    return _show(
        args,
        lambda conn: alerts.alerts(conn, args.limit, lookup.silenced(), entries),
        screens.alerts_screen,
    )


def _silence(args: argparse.Namespace) -> int:
    author = args.author or getpass.getuser()
    silence_id, manager = silences.create(
        receivers.alertmanagers(),
        args.rule,
        dict(args.matchers),
        args.duration,
        args.comment,
        author,
    )
    print(silence_id, flush=True)
    say(f"silenced {args.rule} for {format_duration(args.duration)} in {manager.name}")
    return 0
