"""``rttm run``: the ingestion, the metrics flow and the dashboard, supervised, in one command.

For a real deployment on one machine (systemd runs this one command): the servers are the
ones ``RTTM_KAFKA_BROKERS`` and ``RTTM_DATABASE_URL`` name, never a local stack. Each flow
runs as one process or as a cluster of processes on 127.0.0.1 (``--ingest N``), each with
its own recovery directory under ``--recovery-dir``, as each host of a cluster across
machines would have.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from bytewax.recovery import init_db_dir

from rttm.alerts import receivers
from rttm.cli import Subcommands, add_command, lag_commands, metrics_access, say, serve_security
from rttm.cli.serve_commands import DEFAULT_PORT, refuse_writer_role
from rttm.core import config, flow_settings, logs
from rttm.core.addresses import LOCALHOST
from rttm.core.errors import RttmError
from rttm.core.safe_paths import check_private_dir
from rttm.ops.supervisor import MAX_DELAY_S, STOP_TIMEOUT_S, Child, Group, Supervisor
from rttm.web.auth import DEFAULT_PROXY_HEADER

#: The flows ``rttm run`` can run, in the order they are stopped (the dashboard after them).
FLOWS = ("ingest", "metrics")
DEFAULT_CLUSTER_PORT = 2101


def register(commands: Subcommands) -> None:
    """Add ``rttm run``."""
    run = add_command(
        commands,
        "run",
        help="run the ingestion, the metrics flow and the dashboard, supervised",
        description="Run RTTM for real: the ingestion, the metrics flow and the dashboard "
        "as child processes against the servers RTTM_KAFKA_BROKERS and RTTM_DATABASE_URL "
        "name (never a local stack), and rttm lag-exporter when RTTM_LAG_GROUPS or "
        "RTTM_LAG_GROUP_REGEX names consumer groups. Each line a child writes starts with its "
        "name. A child that ends is restarted (a flow's cluster as a whole) after a delay that "
        f"doubles up to {MAX_DELAY_S:g} s. SIGTERM or Ctrl-C stops the ingestion, then the "
        "metrics flow, then the dashboard, each cleanly; a second signal kills them at once.",
    )
    run.add_argument(
        "--ingest",
        type=int,
        default=1,
        metavar="N",
        help="ingestion processes, as one cluster if > 1; 0: none (default %(default)s)",
    )
    run.add_argument(
        "--metrics",
        type=int,
        default=1,
        metavar="N",
        help="metrics flow processes, as one cluster if > 1; 0: none (default %(default)s)",
    )
    run.add_argument(
        "--no-serve", dest="serve", action="store_false", help="do not run the dashboard"
    )
    run.add_argument(
        "--host", default=LOCALHOST, help="dashboard address (default 127.0.0.1: this machine only)"
    )
    run.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="dashboard port (default %(default)s)"
    )
    run.add_argument(
        "-w",
        "--workers",
        type=int,
        default=1,
        help="worker threads per flow process (default %(default)s)",
    )
    run.add_argument(
        "--recovery-dir",
        type=Path,
        metavar="DIR",
        help="keep each flow process's recovery store under DIR/<flow>/"
        "process-<i> (made on first use)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="FIRST",
        help="give the flow processes FIRST, FIRST+1, … on --metrics-host for "
        "/metrics, /healthz and /readyz (ingestion first, the lag exporter last)",
    )
    run.add_argument(
        "--allow-writer-role",
        action="store_true",
        help="let the dashboard run as RTTM_DATABASE_URL's role although it can "
        "write (else run it apart, as a grant-viewer role: --no-serve)",
    )
    run.add_argument(
        "--metrics-host",
        default=LOCALHOST,
        metavar="ADDR",
        help="address of the flows' metrics ports (default 127.0.0.1; another "
        f"needs ${metrics_access.ENV_AUTH_FILE} or ${metrics_access.ENV_TOKEN_FILE}, "
        "which the flows read)",
    )
    run.add_argument(
        "--cluster-port",
        type=int,
        default=DEFAULT_CLUSTER_PORT,
        metavar="FIRST",
        help="first of the 127.0.0.1 ports a flow's cluster processes talk "
        "on (default %(default)s)",
    )
    run.add_argument(
        "--stop-timeout",
        type=float,
        default=STOP_TIMEOUT_S,
        metavar="SECONDS",
        help="how long each group (a flow's processes, the dashboard) gets to "
        "stop before it is killed (default %(default)s)",
    )
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    logs.setup()
    missing = [
        name
        for name in (config.ENV_BROKERS, config.ENV_DATABASE_URL)
        if not os.environ.get(name, "").strip()
    ]
    if missing:
        msg = (
            f"rttm run needs {' and '.join(missing)}: it runs against your servers and "
            "never starts a local stack (for one: `rttm up`, or `rttm demo`)"
        )
        raise RttmError(msg)
    if not flow_settings.tail(os.environ):
        msg = (
            f"{flow_settings.ENV_TAIL}=0 makes each flow stop at the end of its "
            "partitions, and rttm run would restart it for ever: unset it"
        )
        raise RttmError(msg)
    receivers.from_env(os.environ)  # a bad alert receiver now, not in a restart loop
    if args.metrics_port is not None:  # the flows would refuse it, restart after restart
        metrics_access.authenticator(
            argparse.Namespace(
                metrics_host=args.metrics_host,
                metrics_auth_file=None,
                metrics_token_file=None,
                metrics_unauthenticated=False,
            )
        )
    if min(args.ingest, args.metrics) < 0 or args.workers < 1 or args.stop_timeout <= 0:
        msg = "--ingest and --metrics must be >= 0, --workers >= 1, --stop-timeout > 0"
        raise RttmError(msg)
    _check_ports(args)
    if lag_commands.configured():  # what the exporter would refuse, before a restart loop
        lag_commands.watch(argparse.Namespace(group=[], group_regex=None))
    groups = _groups(args)
    if not groups:
        msg = "nothing to run: --ingest 0, --metrics 0 and --no-serve"
        raise RttmError(msg)
    if args.serve:  # what the dashboard would refuse, here rather than restart after restart
        serve_security.from_args(_serve_args(args))
        if not args.allow_writer_role:
            refuse_writer_role(os.environ[config.ENV_DATABASE_URL])
    return Supervisor(groups, args.stop_timeout).run()


def _serve_args(args: argparse.Namespace) -> argparse.Namespace:
    """What the dashboard child is started with, for its security check (env settings)."""
    return argparse.Namespace(
        host=args.host,
        tls_cert=None,
        tls_key=None,
        auth_file=None,
        token_file=None,
        trust_proxy=None,
        proxy_user_header=DEFAULT_PROXY_HEADER,
        allowed_host=[],
    )


def _flow_ports(args: argparse.Namespace) -> dict[str, tuple[list[int], list[int]]]:
    """Each flow run: the ports of its processes, (cluster ports, metrics ports).

    Handed out in order from ``--cluster-port`` and ``--metrics-port``; a flow of one
    process still takes its cluster port, unused. The one place that decides them.
    """
    ports = {}
    cluster_port, metrics_port = args.cluster_port, args.metrics_port
    for flow in FLOWS:
        count = getattr(args, flow)
        if count == 0:
            continue
        cluster = [cluster_port + i for i in range(count)]
        metrics = [metrics_port + i for i in range(count)] if metrics_port is not None else []
        cluster_port += count
        metrics_port = metrics_port + count if metrics_port is not None else None
        ports[flow] = (cluster, metrics)
    return ports


def _check_ports(args: argparse.Namespace) -> None:
    """Refuse, in one line, ports out of range or used twice: each would be a crash loop."""
    flows = _flow_ports(args).values()
    ports = {
        "--cluster-port": [p for cluster, _ in flows if len(cluster) > 1 for p in cluster],
        "--metrics-port": [p for _, metrics in flows for p in metrics] + _exporter_port(args),
        "--port": [args.port] if args.serve else [],
    }
    for option, numbers in ports.items():
        if numbers and not (min(numbers) > 0 and max(numbers) < 65536):
            msg = f"{option}: the ports {numbers[0]} to {numbers[-1]} are not all within 1 to 65535"
            raise RttmError(msg)
    seen: dict[int, str] = {}
    for option, numbers in ports.items():
        for number in numbers:
            if number in seen:
                msg = f"port {number} is both {seen[number]}'s and {option}'s: move one"
                raise RttmError(msg)
            seen[number] = option


def _groups(args: argparse.Namespace) -> list[Group]:
    """One group per flow (its processes), the dashboard's and the lag exporter's.

    In stopping order: the exporter first (it only publishes), the dashboard last.
    """
    groups = []
    if lag_commands.configured():
        exporter = [sys.executable, "-m", "rttm", "lag-exporter"]  # it reads $RTTM_LAG_*
        for port in _exporter_port(args):
            exporter += ["--metrics-port", str(port), "--metrics-host", args.metrics_host]
        groups.append(Group("lag-exporter", (Child("lag-exporter", tuple(exporter)),)))
    for flow, (cluster, metrics) in _flow_ports(args).items():
        count = len(cluster)
        places = ";".join(f"{LOCALHOST}:{port}" for port in cluster)
        stores = _recovery_dirs(args.recovery_dir / flow, count) if args.recovery_dir else None
        children = []
        for index in range(count):
            argv = [sys.executable, "-m", "rttm", flow, "-w", str(args.workers)]
            if count > 1:
                argv += ["-i", str(index), "-a", places]
            if stores is not None:
                argv += ["--recovery-dir", str(stores[index])]
            if metrics:
                argv += ["--metrics-port", str(metrics[index]), "--metrics-host", args.metrics_host]
            name = f"{flow}-{index}" if count > 1 else flow
            children.append(Child(name, tuple(argv)))
        groups.append(Group(flow, tuple(children)))
    if args.serve:
        argv = [
            sys.executable,
            "-m",
            "rttm",
            "serve",
            "--host",
            args.host,
            "--port",
            str(args.port),
            *(["--allow-writer-role"] if args.allow_writer_role else []),
        ]
        groups.append(Group("serve", (Child("serve", tuple(argv)),)))
    return groups


def _exporter_port(args: argparse.Namespace) -> list[int]:
    """The lag exporter's metrics port: the one after the flows' (none without either)."""
    if args.metrics_port is None or not lag_commands.configured():
        return []
    return [args.metrics_port + sum(getattr(args, flow) for flow in FLOWS)]


def _recovery_dirs(root: Path, count: int) -> list[Path]:
    """``root/process-<i>`` holding ``part-<i>`` for each of ``count`` processes.

    Made on first use (the parts of one store, one per process, each in its process's
    directory: the layout of a cluster whose hosts keep their own disks); later the count
    must stay the same, since a recovery store's parts are fixed when it is made.
    """
    for folder in (root.parent, root):  # --recovery-dir, then this flow's folder in it
        check_private_dir(folder, "recovery directory (--recovery-dir)")
    wanted = [root / f"process-{i}" for i in range(count)]
    found = sorted(root.glob("process-*")) if root.is_dir() else []
    if not found:
        fresh = root / ".new"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        init_db_dir(fresh, count)  # type: ignore[no-untyped-call]
        for index, directory in enumerate(wanted):
            directory.mkdir()
            (fresh / f"part-{index}.sqlite3").rename(directory / f"part-{index}.sqlite3")
        fresh.rmdir()
        last = f"…{count - 1}" if count > 1 else ""
        say(f"initialised recovery directories {root}/process-0{last} (a part each)")
        return wanted
    missing = [
        str(d / f"part-{i}.sqlite3")
        for i, d in enumerate(wanted)
        if not (d / f"part-{i}.sqlite3").exists()
    ]
    extra = sorted(set(found) - set(wanted))
    if missing or extra:
        names = ", ".join(p.name for p in found)
        msg = (
            f"{root} holds {names}, not the store of {count} process(es) "
            f"(process-<i>/part-<i>.sqlite3 for each): keep the process count it was "
            "made for, or use a new --recovery-dir"
        )
        raise RttmError(msg)
    return wanted
