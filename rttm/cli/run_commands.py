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

from rttm import config, flow_settings, logs
from rttm.alerts import receivers
from rttm.cli import Subcommands, say
from rttm.cli.serve_commands import DEFAULT_PORT
from rttm.errors import RttmError
from rttm.stack.processes import LOCALHOST
from rttm.supervisor import MAX_DELAY_S, STOP_TIMEOUT_S, Child, Group, Supervisor

#: The flows ``rttm run`` can run, in the order they are stopped (the dashboard after them).
FLOWS = ("ingest", "metrics")
DEFAULT_CLUSTER_PORT = 2101


def register(commands: Subcommands) -> None:
    """Add ``rttm run``."""
    run = commands.add_parser(
        "run",
        help="run the ingestion, the metrics flow and the dashboard, supervised",
        description="Run RTTM for real: the ingestion, the metrics flow and the dashboard "
        "as child processes against the servers RTTM_KAFKA_BROKERS and RTTM_DATABASE_URL "
        "name (never a local stack). Each line a child writes starts with its name. A "
        "child that ends is restarted (a flow's cluster as a whole) after a delay that "
        f"doubles up to {MAX_DELAY_S:g} s. SIGTERM or Ctrl-C stops the ingestion, then the "
        "metrics flow, then the dashboard, each cleanly; a second signal kills them at once.",
    )
    run.add_argument("--ingest", type=int, default=1, metavar="N",
                     help="ingestion processes, as one cluster if > 1; 0: none "
                     "(default %(default)s)")  # fmt: skip
    run.add_argument("--metrics", type=int, default=1, metavar="N",
                     help="metrics flow processes, as one cluster if > 1; 0: none "
                     "(default %(default)s)")  # fmt: skip
    run.add_argument("--no-serve", dest="serve", action="store_false",
                     help="do not run the dashboard")  # fmt: skip
    run.add_argument("--host", default=LOCALHOST,
                     help="dashboard address (default 127.0.0.1: this machine only)")  # fmt: skip
    run.add_argument("--port", type=int, default=DEFAULT_PORT,
                     help="dashboard port (default %(default)s)")  # fmt: skip
    run.add_argument("-w", "--workers", type=int, default=1,
                     help="worker threads per flow process (default %(default)s)")  # fmt: skip
    run.add_argument("--recovery-dir", type=Path, metavar="DIR",
                     help="keep each flow process's recovery store under DIR/<flow>/"
                     "process-<i> (made on first use)")  # fmt: skip
    run.add_argument("--metrics-port", type=int, metavar="FIRST",
                     help="give the flow processes FIRST, FIRST+1, … on 127.0.0.1 for "
                     "/metrics, /healthz and /readyz (ingestion first)")  # fmt: skip
    run.add_argument("--cluster-port", type=int, default=DEFAULT_CLUSTER_PORT, metavar="FIRST",
                     help="first of the 127.0.0.1 ports a flow's cluster processes talk "
                     "on (default %(default)s)")  # fmt: skip
    run.add_argument("--stop-timeout", type=float, default=STOP_TIMEOUT_S, metavar="SECONDS",
                     help="how long each group (a flow's processes, the dashboard) gets to "
                     "stop before it is killed (default %(default)s)")  # fmt: skip
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    logs.setup()
    missing = [name for name in (config.ENV_BROKERS, config.ENV_DATABASE_URL)
               if not os.environ.get(name, "").strip()]  # fmt: skip
    if missing:
        msg = (f"rttm run needs {' and '.join(missing)}: it runs against your servers and "
               "never starts a local stack (for one: `rttm up`, or `rttm demo`)")  # fmt: skip
        raise RttmError(msg)
    if not flow_settings.tail(os.environ):
        msg = (f"{flow_settings.ENV_TAIL}=0 makes each flow stop at the end of its "
               "partitions, and rttm run would restart it for ever: unset it")  # fmt: skip
        raise RttmError(msg)
    receivers.from_env(os.environ)  # a bad alert receiver now, not in a restart loop
    if min(args.ingest, args.metrics) < 0 or args.workers < 1 or args.stop_timeout <= 0:
        msg = "--ingest and --metrics must be >= 0, --workers >= 1, --stop-timeout > 0"
        raise RttmError(msg)
    _check_ports(args)
    groups = _groups(args)
    if not groups:
        msg = "nothing to run: --ingest 0, --metrics 0 and --no-serve"
        raise RttmError(msg)
    return Supervisor(groups, args.stop_timeout).run()


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
        "--metrics-port": [p for _, metrics in flows for p in metrics],
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
    """One group per flow (its processes) and one for the dashboard, in stopping order."""
    groups = []
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
                argv += ["--metrics-port", str(metrics[index])]
            name = f"{flow}-{index}" if count > 1 else flow
            children.append(Child(name, tuple(argv)))
        groups.append(Group(flow, tuple(children)))
    if args.serve:
        argv = [sys.executable, "-m", "rttm", "serve", "--host", args.host, "--port",
                str(args.port)]  # fmt: skip
        groups.append(Group("serve", (Child("serve", tuple(argv)),)))
    return groups


def _recovery_dirs(root: Path, count: int) -> list[Path]:
    """``root/process-<i>`` holding ``part-<i>`` for each of ``count`` processes.

    Made on first use (the parts of one store, one per process, each in its process's
    directory: the layout of a cluster whose hosts keep their own disks); later the count
    must stay the same, since a recovery store's parts are fixed when it is made.
    """
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
    missing = [str(d / f"part-{i}.sqlite3") for i, d in enumerate(wanted)
               if not (d / f"part-{i}.sqlite3").exists()]  # fmt: skip
    extra = sorted(set(found) - set(wanted))
    if missing or extra:
        names = ", ".join(p.name for p in found)
        msg = (f"{root} holds {names}, not the store of {count} process(es) "
               f"(process-<i>/part-<i>.sqlite3 for each): keep the process count it was "
               "made for, or use a new --recovery-dir")  # fmt: skip
        raise RttmError(msg)
    return wanted
