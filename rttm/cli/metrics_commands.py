"""``rttm metrics``: run the metrics and alerts dataflow in this process, with a live line."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from rttm import flow_settings, health, logs, stopping
from rttm.cli import Subcommands, run_flow, say
from rttm.errors import RttmError
from rttm.metrics import prometheus
from rttm.metrics import settings as metrics_settings
from rttm.metrics.flow import build_flow
from rttm.metrics.progress import MetricsLine
from rttm.metrics.shard import EngineConfig

#: Written into a recovery directory: the window length and shard count of its state.
LAYOUT_MARKER = "rttm-metrics-layout"


def register(commands: Subcommands) -> None:
    """Add ``rttm metrics``."""
    metrics = commands.add_parser(
        "metrics",
        help="compute metrics and evaluate alert rules (the dataflows.metrics flow)",
        description="Run the metrics and alerts dataflow in this process, alone or (-i/-a) "
        "as one process of a cluster. Same RTTM_* environment as "
        "`python -m bytewax.run dataflows.metrics`. "
        "Ctrl-C or SIGTERM stops it cleanly, keeping open windows in the recovery directory.",
    )
    run_flow.add_options(metrics)
    metrics.set_defaults(run=_metrics)


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
        build_flow(settings), args, store, MetricsLine(), bounded=not settings.tail,
        stopped=_stopped, where=where, checks=checks,
    )  # fmt: skip


def _stopped(summary: str) -> str:
    received = stopping.received() or signal.SIGTERM
    return f"{summary} | stopped on {received.name}"
