"""``rttm lag-exporter``: publish consumer groups' lag without code in the consumers."""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Mapping

from rttm.cli import Subcommands, add_command, metrics_access, say
from rttm.core import logs, stopping
from rttm.core.config import ConfigError, KafkaSettings
from rttm.core.errors import RttmError
from rttm.core.live_line import LiveLine
from rttm.core.outage import OutageLog
from rttm.lag import prometheus
from rttm.lag.exporter import DEFAULT_INTERVAL_S, LagExporter, Watch, summary
from rttm.lag.offsets import SourceError
from rttm.ops import health, metrics_port
from rttm_emit import Emitter
from rttm_emit.kafka_settings import ENV_KAFKA_CONFIG, KafkaConfigError, read_kafka_config

_LOG = logging.getLogger(__name__)
#: Comma list of GROUP[=SERVICE]: the groups to watch when no --group is given.
ENV_GROUPS = "RTTM_LAG_GROUPS"
#: The pattern of groups to watch when no --group-regex is given.
ENV_GROUP_REGEX = "RTTM_LAG_GROUP_REGEX"
#: The variables that name groups to watch (``rttm run`` starts the exporter when one is set).
ENVIRONMENT = (ENV_GROUPS, ENV_GROUP_REGEX)
#: Seconds ``--once`` and a stop wait for RTTM's broker to acknowledge the snapshots.
CLOSE_TIMEOUT_S = 10.0


def register(commands: Subcommands) -> None:
    """Add ``rttm lag-exporter``."""
    cmd = add_command(
        commands,
        "lag-exporter",
        help="publish consumer groups' lag from the Kafka cluster (no code in the consumers)",
        description="Every --interval, reads each watched consumer group's committed offsets "
        "and its partitions' end offsets, and publishes rttm.queue.metrics snapshots to "
        "RTTM's cluster, as QueueMetricsReporter does from inside a service.",
    )
    cmd.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP[=SERVICE]",
        help=f"a consumer group, and the service shown for it (default: the group's name);"
        f" repeatable (default ${ENV_GROUPS}, a comma list)",
    )
    cmd.add_argument(
        "--group-regex",
        metavar="REGEX",
        help="also every group whose whole id matches REGEX, found again each round"
        f" (default ${ENV_GROUP_REGEX})",
    )
    cmd.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help="seconds between rounds of snapshots (default %(default)s)",
    )
    cmd.add_argument(
        "--once", action="store_true", help="take one round of snapshots, publish it and exit"
    )
    cmd.add_argument(
        "--source-brokers",
        metavar="HOST:PORT,...",
        help="the business Kafka cluster, when it is not RTTM's own (default: RTTM's brokers)",
    )
    cmd.add_argument(
        "--source-config",
        metavar="FILE",
        help=f"extra librdkafka settings for the business cluster (key=value lines, as"
        f" ${ENV_KAFKA_CONFIG}; default: ${ENV_KAFKA_CONFIG} without --source-brokers, else none)",
    )
    cmd.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the exporter's counters (/metrics) and health (/healthz, /readyz)",
    )
    metrics_access.add_arguments(cmd)
    cmd.set_defaults(run=_lag_exporter)


def watch(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Watch:
    """The groups to watch: the flags if any is given, else the environment's.

    Raises:
        RttmError: in one line, naming the flag or the variable at fault.
    """
    if args.group or args.group_regex is not None:  # the flags, and nothing of the variables
        return Watch.parse(args.group, args.group_regex)
    if not configured(env):
        msg = (
            "no consumer groups to watch: give --group GROUP[=SERVICE] or --group-regex"
            f" (or ${ENV_GROUPS}, ${ENV_GROUP_REGEX})"
        )
        raise RttmError(msg)
    named = [g for g in env.get(ENV_GROUPS, "").split(",") if g.strip()]
    pattern = env.get(ENV_GROUP_REGEX, "").strip() or None
    return Watch.parse(named, pattern, ENVIRONMENT)


def configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment names consumer groups to watch (``rttm run`` then runs us)."""
    return any(env.get(name, "").strip() for name in ENVIRONMENT)


def source_settings(
    args: argparse.Namespace, rttm: KafkaSettings, env: Mapping[str, str] = os.environ
) -> KafkaSettings:
    """The business cluster's client settings (RTTM's own unless --source-brokers)."""
    extra = {} if args.source_brokers else dict(rttm.extra)
    if args.source_config:
        try:
            extra = read_kafka_config({**env, ENV_KAFKA_CONFIG: args.source_config})
        except KafkaConfigError as exc:
            msg = str(exc).replace(ENV_KAFKA_CONFIG, "--source-config", 1)
            raise ConfigError(msg) from None
    brokers = args.source_brokers.strip() if args.source_brokers else rttm.brokers
    return KafkaSettings(brokers=brokers, extra=extra)


def _lag_exporter(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        msg = "--interval must be > 0"
        raise RttmError(msg)
    watched = watch(args)
    if args.metrics_port:
        metrics_access.authenticator(args)  # an open non-loopback port is refused here, first
    logs.setup()
    rttm = KafkaSettings.from_env()
    source = source_settings(args, rttm)
    emitter = Emitter(rttm)
    exporter = LagExporter(source, emitter, watched)
    if args.metrics_port:
        prometheus.register(exporter, emitter)
        checks = [health.broker(source), health.broker(rttm), _last_round(exporter)]
        metrics_port.serve(
            args.metrics_port,
            health.Readiness(checks),
            args.metrics_host,
            metrics_access.authenticator(args),
        )
    stopping.install()
    where = f"from {source.brokers} to {rttm.brokers}"
    line = LiveLine(lambda: summary(exporter.counters, emitter.counters))
    if not args.once:
        say(f"lag exporter: {_describe(watched)}, every {args.interval:g} s, {where}")
        line.start()
    outage = OutageLog(_LOG, f"source cluster {source.brokers}", "retrying every round")
    try:
        while True:
            began = time.monotonic()
            try:
                exporter.round()
            except SourceError as exc:
                if args.once:
                    msg = f"source cluster {source.brokers}: {exc}"
                    raise RttmError(msg) from None
                outage.lost(str(exc))
            else:
                outage.back()
            if args.once or stopping.wait(max(args.interval - (time.monotonic() - began), 0)):
                break
    finally:
        line.stop()
        exporter.close()
        left = emitter.close(CLOSE_TIMEOUT_S)
    done = summary(exporter.counters, emitter.counters)
    received = stopping.received()
    say(f"lag exporter stopped on {received.name}: {done}" if received else done)
    # One round is judged whole: all it took must be published (close() counted what was
    # still queued as failed). A following run is judged by its stop: what was queued then.
    sent = emitter.counters
    unpublished = sent.failed + sent.dropped if args.once else left
    if unpublished:
        msg = f"{unpublished} snapshots not acknowledged by RTTM's broker at {rttm.brokers}"
        raise RttmError(msg)
    return stopping.status(finished=True)


def _describe(watched: Watch) -> str:
    parts = [", ".join(sorted(watched.named))] if watched.named else []
    if watched.pattern is not None:
        parts.append(f"groups matching {watched.pattern.pattern!r}")
    return "watching " + " and ".join(parts)


def _last_round(exporter: LagExporter) -> health.Check:
    """Ready while the last round of snapshots succeeded."""

    def check() -> str | None:
        error = exporter.counters.last_error
        return f"last round failed: {error}" if error else None

    return check
