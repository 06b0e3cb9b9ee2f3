"""What ``rttm ingest`` and ``rttm metrics`` share: options, recovery, a clean stop.

Both run their flow in this process (alone, or as one process of a cluster) until it ends
or a signal stops it cleanly, with a live line, health probes on ``--metrics-port``, and
end with one line saying what was done (and where it stopped).
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from rttm.cli import metrics_access, say
from rttm.core import stopping
from rttm.core.errors import RttmError
from rttm.core.live_line import RateLine
from rttm.core.safe_paths import check_private_dir
from rttm.core.stream import stats
from rttm.ops import cluster, health, metrics_port
from rttm.ops.cluster import Place


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every flow command has."""
    parser.add_argument(
        "-w", "--workers", type=int, default=1, help="worker threads (default %(default)s)"
    )
    parser.add_argument(
        "--recovery-dir",
        type=Path,
        help="Bytewax recovery directory (initialised if new, unless this is a cluster process)",
    )
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="epoch length = snapshot interval (default %(default)s)",
    )
    parser.add_argument(
        "--backup-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep older snapshots this long (default %(default)s)",
    )
    parser.add_argument(
        "--until-caught-up",
        action="store_true",
        help="stop at the end of every partition (RTTM_TAIL=0)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the flow's counters (/metrics) and health (/healthz, /readyz) "
        "on --metrics-host:PORT",
    )
    metrics_access.add_arguments(parser)
    cluster.add_options(parser)


def check_options(args: argparse.Namespace) -> Place | None:
    """Refuse option values that cannot work, in one line; this process's cluster place."""
    if args.workers < 1 or args.snapshot_interval <= 0 or args.backup_interval < 0:
        msg = "--workers must be >= 1, --snapshot-interval > 0 and --backup-interval >= 0"
        raise RttmError(msg)
    if args.metrics_port:
        metrics_access.authenticator(args)  # an open non-loopback port is refused here, first
    where = cluster.place(args)
    if where is not None:
        cluster.peer_timeout(args)
        cluster.check_own_address(where)
    return where


@dataclass(frozen=True)
class Recovery:
    """A recovery directory ready for Bytewax, and whether it held snapshots already."""

    directory: Path
    existing: bool
    config: RecoveryConfig


def state_keys(directory: Path) -> set[str]:
    """The state keys a recovery store's snapshots hold, over all its parts (read only).

    Raises:
        RttmError: a part cannot be read as a Bytewax recovery part.
    """
    keys: set[str] = set()
    for part in sorted(directory.glob("part-*.sqlite3")):
        try:
            with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
                keys.update(key for (key,) in db.execute("SELECT DISTINCT state_key FROM snaps"))
        except sqlite3.Error as exc:
            msg = f"recovery directory {directory}: cannot read {part.name}: {exc}"
            raise RttmError(msg) from None
    return keys


def recovery(
    directory: Path | None, backup_interval: float, where: Place | None = None
) -> Recovery | None:
    """The recovery store in ``directory``, initialised (one partition) if new.

    A cluster process never initialises one: its parts are made once for the whole cluster
    (``python -m bytewax.recovery DIR N``, docs/scaling.md), not by whichever starts first.
    """
    if directory is None:
        return None
    check_private_dir(directory, "recovery directory (--recovery-dir)", files="part-*")
    existing = directory.is_dir() and any(directory.glob("part-*.sqlite3"))
    if not existing and where is not None:
        count = len(where.addresses)
        msg = (
            f"recovery directory {directory} holds no parts; a cluster's are made once, "
            f"before its first start: mkdir -p {directory} && python -m bytewax.recovery "
            f"{directory} {count} "
            "(docs/scaling.md: recovery layouts)"
        )
        raise RttmError(msg)
    if not existing:
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)  # type: ignore[no-untyped-call]
        say(f"initialised recovery directory {directory} (1 partition)")
    config = RecoveryConfig(  # type: ignore[no-untyped-call]
        directory, backup_interval=timedelta(seconds=backup_interval)
    )
    return Recovery(directory, existing, config)


def run(
    flow: Dataflow,
    args: argparse.Namespace,
    store: Recovery | None,
    line: RateLine,
    *,
    bounded: bool,
    stopped: Callable[[str], str],
    where: Place | None,
    checks: list[health.Check],
) -> int:
    """Run ``flow`` here until it ends or is stopped; print its last line; exit status.

    SIGINT and SIGTERM stop it cleanly (``rttm.core.stopping``): the live line ends with
    ``stopped(summary)``, and the status is 0, or 130/143 for a ``bounded`` run cut short.
    ``checks`` (the servers') and the flow's progress make ``/readyz`` on --metrics-port.
    """
    if args.metrics_port:
        readiness = health.Readiness([*checks, health.flow_progress()])
        authenticator = metrics_access.authenticator(args)
        metrics_port.serve(args.metrics_port, readiness, args.metrics_host, authenticator)
    stopping.install()
    if where is not None:
        timeout = cluster.peer_timeout(args)
        cluster.watch_start(where, timeout, lambda: stats.COUNTERS.began)
        say(
            f"process {where.process_id} of a {len(where.addresses)}-process cluster on "
            f"{where.own_address}; waiting up to {timeout:g} s for the others"
        )
    line.start()
    try:
        cli_main(  # type: ignore[no-untyped-call]
            flow,
            workers_per_process=args.workers,
            process_id=where.process_id if where is not None else None,
            addresses=list(where.addresses) if where is not None else None,
            epoch_interval=timedelta(seconds=args.snapshot_interval),
            recovery_config=store.config if store is not None else None,
        )
    except BaseException as exc:
        # A cluster process whose peer died ends with a Rust panic and a traceback: one
        # line says what it means instead.
        if where is not None and type(exc).__name__ == "PanicException":
            msg = (
                "another process of the cluster ended, so this one stops too "
                f"({exc}); restart the cluster as a whole"
            )
            raise RttmError(msg) from None
        raise
    finally:
        summary = line.stop()
        say(stopped(summary) if stopping.requested() else summary)
    return stopping.status(finished=not bounded)
