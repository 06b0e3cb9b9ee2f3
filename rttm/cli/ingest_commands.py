"""``rttm ingest``: run the ingestion dataflow in this process, with a live progress line."""

from __future__ import annotations

import argparse
import os
import signal
from functools import partial
from pathlib import Path

from rttm.cli import Subcommands, add_command, run_flow, say
from rttm.core import flow_settings, logs, memory, stopping
from rttm.core.errors import RttmError
from rttm.core.stream.shards import shards_among
from rttm.ingest import progress, prometheus
from rttm.ingest import settings as ingest_settings
from rttm.ingest.flow import build_flow
from rttm.ingest.progress import ProgressLine
from rttm.ingest.settings import IngestSettings
from rttm.ops import health
from rttm.queue_reporter import QueueMetricsReporter
from rttm_emit import Emitter

#: How RTTM's own ingestion appears in the queue metrics it publishes about itself.
LAG_SERVICE_NAME = "rttm-ingest"


def register(commands: Subcommands) -> None:
    """Add ``rttm ingest``."""
    ingest = add_command(
        commands,
        "ingest",
        help="ingest the rttm.* topics into PostgreSQL (the dataflows.rttm flow)",
        description="Run the ingestion dataflow in this process, alone or (-i/-a) as one "
        "process of a cluster. Same RTTM_* environment as `python -m bytewax.run dataflows.rttm`. "
        "Ctrl-C or SIGTERM stops it cleanly: what was read is written, exit status 0.",
    )
    run_flow.add_options(ingest)
    ingest.add_argument("--topics", help="comma list of topics (RTTM_TOPICS)")
    ingest.add_argument(
        "--lag-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="publish RTTM's own consumer-group lag to rttm.queue.metrics "
        "this often; 0 turns it off (default %(default)s)",
    )
    ingest.set_defaults(run=_ingest)


#: Written into a recovery directory: the most shards its snapshots hold state for.
SHARDS_MARKER = "rttm-shards"


def _check_shards(directory: Path, shards: int) -> None:
    """Refuse fewer shards than the recovery store may hold: Bytewax cannot resume that.

    More shards is fine (the new ones start empty). The marker keeps the largest count ever
    started here, written before the flow runs: it may overstate, never understate. A store
    without it was made by ``python -m bytewax.recovery`` (empty) or run by ``python -m
    bytewax.run`` (which writes no marker): its snapshots' shard keys say how many.
    """
    marker = directory / SHARDS_MARKER
    if marker.exists():
        text = marker.read_text().strip()
        if not text.isdigit():
            msg = f"{marker}: expected a shard count, found {text[:20]!r}"
            raise RttmError(msg)
        written = int(text)
    else:
        written = shards_among(run_flow.state_keys(directory))
    if shards < written:
        name = ingest_settings.ENV_SHARDS
        msg = (
            f"recovery directory {directory} holds state for {written} shards; "
            f"{name}={shards} is fewer, which it cannot resume: "
            f"use {name}>={written} or a new recovery directory"
        )
        raise RttmError(msg)
    if shards > written or not marker.exists():
        marker.write_text(f"{shards}\n")


def _ingest(args: argparse.Namespace) -> int:
    memory.tune_malloc()  # before any thread: the pre-flight checks start librdkafka's
    where = run_flow.check_options(args)
    env = dict(os.environ)
    if args.until_caught_up:
        env[flow_settings.ENV_TAIL] = "0"
    if args.topics:
        env[ingest_settings.ENV_TOPICS] = args.topics
    logs.setup()
    settings = ingest_settings.from_env(env)
    names = [spec.name for spec in settings.topics]
    mode = "until caught up" if not settings.tail else "following (Ctrl-C stops)"
    say(f"ingesting {', '.join(names)} with {args.workers} worker(s), {mode}")
    store = run_flow.recovery(args.recovery_dir, args.backup_interval, where)
    if store is not None:
        _check_shards(store.directory, settings.shards)
    reporters = _lag_reporters(settings, args.lag_interval)
    prometheus.register()
    checks = [health.database(settings.database_url), health.broker(settings.kafka)]
    try:
        return run_flow.run(
            build_flow(settings),
            args,
            store,
            ProgressLine(),
            bounded=not settings.tail,
            stopped=partial(_stopped, settings.database_url, names),
            where=where,
            checks=checks,
        )
    finally:
        for reporter in reporters:
            reporter.stop()
        if reporters:
            reporters[0].emitter.close(timeout=5)


def _stopped(url: str, topics: list[str], summary: str) -> str:
    received = stopping.received() or signal.SIGTERM
    return progress.stopped(summary, received, url, topics)


def _lag_reporters(settings: IngestSettings, interval: float) -> list[QueueMetricsReporter]:
    """One reporter per consumer group RTTM commits to, so RTTM's own lag shows in RTTM."""
    if interval <= 0:
        return []
    emitter = Emitter(settings.kafka)
    return [
        QueueMetricsReporter(
            spec.consumer_group,
            [spec.name],
            service_name=LAG_SERVICE_NAME,
            emitter=emitter,
            settings=settings.kafka,
            interval_s=interval,
        ).start()
        for spec in settings.topics
    ]
