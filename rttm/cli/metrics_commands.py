"""``rttm metrics``: run the metrics and alerts dataflow in this process, with a live line.

``rttm metrics verify`` recounts settled windows from the event tables and compares them
with the stored metrics (:mod:`rttm.views.verify`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from rttm.cli import Subcommands, add_command, run_flow, say, screens
from rttm.core import flow_settings, logs, stopping
from rttm.core.durations import format_duration, parse_positive_duration
from rttm.core.errors import RttmError
from rttm.metrics import prometheus
from rttm.metrics import settings as metrics_settings
from rttm.metrics.flow import build_flow
from rttm.metrics.progress import MetricsLine
from rttm.metrics.shard import EngineConfig
from rttm.ops import health
from rttm.views import verify

#: Written into a recovery directory: the window length and shard count of its state.
LAYOUT_MARKER = "rttm-metrics-layout"
#: Exit statuses of ``rttm metrics verify``, as diff(1)'s: the same, different, trouble.
VERIFY_OK, VERIFY_DIFFERENT, VERIFY_TROUBLE = 0, 1, 2
#: Differences listed in the table; the rest are counted ("and N more"), all in --json.
VERIFY_ROWS = 50


def register(commands: Subcommands) -> None:
    """Add ``rttm metrics``."""
    metrics = add_command(
        commands,
        "metrics",
        help="compute metrics and evaluate alert rules (the dataflows.metrics flow)",
        description="Run the metrics and alerts dataflow in this process, alone or (-i/-a) "
        "as one process of a cluster. Same RTTM_* environment as "
        "`python -m bytewax.run dataflows.metrics`. "
        "Ctrl-C or SIGTERM stops it cleanly, keeping open windows in the recovery directory. "
        "`rttm metrics verify` checks the stored metrics against the event tables instead.",
    )
    run_flow.add_options(metrics)
    metrics.set_defaults(run=_metrics)
    actions = metrics.add_subparsers(dest="action", required=False, metavar="ACTION")
    check = add_command(
        actions,
        "verify",
        help="recount settled windows from the event tables and compare",
        description="Recount the metrics of settled windows from the event tables (trade, "
        "DLQ, error and log events) and compare them with rttm_metrics: every count point "
        "(events, trades_started/completed/rejected, dlq_events, errors, log_events; "
        "__other__ points against the label sets no named point has), the rates and ratios "
        "derived from them, and the latency quantiles for sanity (finite, ordered). A window "
        "is settled when it ended at least RTTM_METRICS_LATENESS + RTTM_METRICS_CORRECTION "
        "before the newest window stored; events the engine noted as not counted "
        "(rttm_metrics_uncounted) are left out. Run it with the engine's RTTM_METRICS_* "
        f"settings. Exit status: {VERIFY_OK} when the metrics agree (or nothing is settled "
        f"yet), {VERIFY_DIFFERENT} when there are differences, {VERIFY_TROUBLE} on a "
        "configuration or database error.",
    )
    check.add_argument(
        "--since",
        type=_since,
        default=verify.DEFAULT_SINCE,
        metavar="D",
        help="check the settled windows of this long before the settled end, such as 30m or "
        f"2h (default {verify.DEFAULT_SINCE})",
    )
    check.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    check.set_defaults(run=_verify)


def _check_layout(directory: Path, engine: EngineConfig, existing: bool) -> None:
    """Refuse a recovery directory whose state has another window length or shard count."""
    marker = directory / LAYOUT_MARKER
    if marker.exists():
        window, _, shards = marker.read_text().strip().partition(" ")
        try:
            stored = (float(window), int(shards))
        except ValueError:
            msg = f"{marker}: expected '<window seconds> <shards>', found {window!r} {shards!r}"
            raise RttmError(msg) from None
        engine.check_layout(stored, "metrics")
    elif existing:  # made by `python -m bytewax.run`: the flow itself checks when it loads
        return
    marker.write_text(f"{engine.window_s:g} {engine.shards}\n")


def _metrics(args: argparse.Namespace) -> int:
    where = run_flow.check_options(args)
    env = dict(os.environ)
    if args.until_caught_up:
        env[flow_settings.ENV_TAIL] = "0"
    logs.setup()
    settings = metrics_settings.from_env(env)
    partitions = sum(settings.partitions.values())
    mode = "until caught up" if not settings.tail else "following (Ctrl-C stops)"
    say(f"computing metrics from {partitions} partitions with {args.workers} worker(s), {mode}")
    store = run_flow.recovery(args.recovery_dir, args.backup_interval, where)
    if store is not None:
        _check_layout(store.directory, settings.engine, store.existing)
    prometheus.register()
    checks = [health.database(settings.database_url), health.broker(settings.kafka)]
    return run_flow.run(
        build_flow(settings),
        args,
        store,
        MetricsLine(),
        bounded=not settings.tail,
        stopped=_stopped,
        where=where,
        checks=checks,
    )


def _stopped(summary: str) -> str:
    received = stopping.received() or signal.SIGTERM
    return f"{summary} | stopped on {received.name}"


def _since(text: str) -> float:
    try:
        return parse_positive_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _verify(args: argparse.Namespace) -> int:
    try:
        report = verify.run(os.environ, args.since)
    except RttmError as exc:  # not 1: that says "different"
        logs.write(f"rttm: error: {exc}", "ERROR")
        return VERIFY_TROUBLE
    if args.json:
        print(json.dumps(report.as_json(), indent=2), flush=True)
    else:
        screens.render(verify_screen(report))
        sys.stdout.flush()
    return VERIFY_OK if report.ok else VERIFY_DIFFERENT


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.6g}"


def _labels(difference: verify.Difference) -> str:
    return ", ".join(f"{name}={value}" for name, value in difference.labels) or "-"


def verify_screen(report: verify.Report) -> list[screens.Block]:
    """The blocks of ``rttm metrics verify``: range and settings, differences, summary."""
    settings = (
        f"settings: window {format_duration(report.window_s)}, lateness "
        f"{format_duration(report.lateness_s)}, correction horizon "
        f"{format_duration(report.correction_s)}"
    )
    span = report.span
    if span is None:
        return [
            screens.Block(
                "nothing to verify yet: rttm_metrics is empty "
                "(is the metrics flow running? rttm metrics)"
            ),
            screens.Block(settings),
        ]
    reference = f"reference {verify.iso_of(span.reference)} (end of the newest window stored)"
    if not span.windows:
        return [
            screens.Block(
                f"nothing settled to verify yet: {reference}, settled up to "
                f"{verify.iso_of(span.settled_end)}"
            ),
            screens.Block(settings),
        ]
    blocks = [
        screens.Block(
            f"checked {verify.iso_of(span.first)} to {verify.iso_of(span.end)} "
            f"({span.windows:,} windows, --since {format_duration(report.since_s)}); "
            f"{reference}, settled up to {verify.iso_of(span.settled_end)}"
        ),
        screens.Block(settings),
    ]
    rows: list[tuple[object, ...]] = [
        (
            verify.iso_of(d.window_start),
            d.metric,
            _labels(d),
            _number(d.stored),
            _number(d.recounted),
            _number(d.difference),
            f"{d.kind} ({d.note})" if d.note else d.kind,
        )
        for d in report.differences[:VERIFY_ROWS]
    ]
    if rows:
        blocks.append(
            screens.Block(
                "differences",
                ("window start", "metric", "labels", "stored", "recounted", "difference", "kind"),
                list(rows),
                more=len(report.differences) - len(rows),
            )
        )
    left_out = sum(report.left_out.values())
    blocks.append(
        screens.Block(
            f"{_count(span.windows, 'window')} checked, {_count(report.compared, 'point')} "
            f"compared, {_count(left_out, 'row')} left out as uncounted, "
            f"{_count(len(report.differences), 'difference')}"
        )
    )
    blocks.append(
        screens.Block(f"not recomputed: {', '.join(verify.LATENCIES)}: {verify.NOT_RECOMPUTED}")
    )
    for why, metrics in verify.NOT_CHECKED.items():
        blocks.append(screens.Block(f"not checked: {', '.join(metrics)}: {why}"))
    return blocks
