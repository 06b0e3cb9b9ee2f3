"""``rttm trace`` / ``status`` / ``alerts``: what an operator looks at, in the terminal.

Tables in a terminal, plain text when piped, ``--json`` for scripts; ``--watch`` redraws
every ``--interval`` seconds until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from rich.console import Console

from rttm import config
from rttm.cli import Subcommands, screens
from rttm.errors import RttmError
from rttm.metrics.settings import pipeline_from_env
from rttm.views import alerts, status, trace
from rttm.views.common import Conn, open_view, query_failed

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
        "--interval", type=bounded(float, 0.5, 3600), default=WATCH_INTERVAL_S, metavar="S",
        help=f"seconds between refreshes (default {WATCH_INTERVAL_S:g})",
    )  # fmt: skip


def register(commands: Subcommands) -> None:
    """Add ``rttm trace``, ``rttm status`` and ``rttm alerts``."""
    trace_cmd = commands.add_parser("trace", help="one trade's timeline across services")
    trace_cmd.add_argument("trade_id", metavar="TRADE_ID")
    _common(trace_cmd)
    trace_cmd.set_defaults(run=_trace)
    status_cmd = commands.add_parser(
        "status", help="TPS, consumers and lag, DLQ, errors, stuck trades, alerts"
    )
    status_cmd.add_argument("--minutes", type=bounded(int, 1, 1440), default=status.DEFAULT_MINUTES,
                            help="period of the averages and counts (default 15)")  # fmt: skip
    _common(status_cmd)
    status_cmd.set_defaults(run=_status)
    alerts_cmd = commands.add_parser("alerts", help="firing and pending alerts, recent changes")
    alerts_cmd.add_argument("--limit", type=bounded(int, 1, 1000), default=50,
                            help="recent transitions shown (1-1000)")  # fmt: skip
    _common(alerts_cmd)
    alerts_cmd.set_defaults(run=_alerts)


def _show(
    args: argparse.Namespace,
    read: Callable[[Conn], dict[str, Any] | None],
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
    return _show(args, lambda conn: trace.trace(conn, args.trade_id, stages), screens.trace_screen)


def _status(args: argparse.Namespace) -> int:
    return _show(args, lambda conn: status.status(conn, args.minutes), screens.status_screen)


def _alerts(args: argparse.Namespace) -> int:
    return _show(args, lambda conn: alerts.alerts(conn, args.limit), screens.alerts_screen)
