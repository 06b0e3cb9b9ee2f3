"""``rttm demo``: everything at once on this machine, to see RTTM work in a minute.

Brings up a stack of its own (``rttm up`` in ``RTTM_STATE_DIR/demo``: broker, PostgreSQL,
migrations, topics — never the servers ``RTTM_KAFKA_BROKERS``/``RTTM_DATABASE_URL`` name,
nor the alert receivers of ``RTTM_ALERTMANAGER_URL``/``RTTM_ALERT_WEBHOOK_URL``, so fake
trades and alerts cannot reach a real platform or page anyone), then runs the simulator (the
platform of docs/design.md §5.3 with its injected faults: stuck trades, a lagging consumer,
DLQ traffic), a business queue whose consumer never reports its lag
(:mod:`rttm.simulator.silent_consumer`) with ``rttm lag-exporter`` watching its group, the
ingestion flow, the metrics flow and the dashboard, each as its own process logging to
``RTTM_STATE_DIR/demo-logs``. Prints the dashboard's URL and the ``export`` lines of the
demo's broker and PostgreSQL (as ``rttm up`` prints them); Ctrl-C stops every process and
the demo's stack, and deletes its data, so each demo starts afresh, and says in one line
how each process ended.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rttm import stack
from rttm.alerts import receivers
from rttm.cli import Subcommands, add_command, lag_commands, say
from rttm.cli.serve_commands import DEFAULT_PORT
from rttm.cli.stack_commands import print_env
from rttm.core import config, stopping
from rttm.core.addresses import LOCALHOST
from rttm.core.errors import RttmError
from rttm.core.logs import setup as setup_logging
from rttm.stack.processes import log_tail, port_answers, port_is_free

STOP_GRACE_S = 10.0
#: The demo's business queue, its consumer group and the service shown for it: a consumer
#: that does not report its lag, seen through ``rttm lag-exporter`` all the same.
DEMO_QUEUE, DEMO_GROUP, DEMO_SERVICE = "demo.orders", "demo-settlement", "settlement-service"
START_TIMEOUT_S = 60.0


@dataclass
class Child:
    """A process of the demo and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


def register(commands: Subcommands) -> None:
    """Add ``rttm demo``."""
    demo = add_command(
        commands,
        "demo",
        help="run the whole thing locally: stack, simulator, flows, dashboard",
        description="Start a stack of its own in RTTM_STATE_DIR/demo, then the simulator, "
        "the ingestion, the metrics flow and the dashboard, logging to RTTM_STATE_DIR/demo-logs. "
        "Prints the dashboard's URL, then the export lines that point the CLI at the demo's "
        "broker and PostgreSQL. The servers and alert receivers of the environment are never "
        "used (fake faults page nobody); other RTTM_* settings pass on to its processes. "
        "Ctrl-C stops everything and deletes the demo's data.",
    )
    demo.add_argument(
        "--rate", type=float, default=50.0, help="simulated trades per second (default 50)"
    )
    demo.add_argument("--port", type=int, default=DEFAULT_PORT, help="dashboard port")
    demo.set_defaults(run=_demo)


#: Settings of the real platform a demo must not see: its servers and its alert receivers.
_NOT_FOR_DEMOS = (
    config.ENV_BROKERS,
    config.ENV_DATABASE_URL,
    receivers.ENV_ALERTMANAGER,
    receivers.ENV_WEBHOOK,
    receivers.ENV_WEBHOOK_SECRET,
    receivers.ENV_DASHBOARD,
)


def _stack_env(home: Path) -> dict[str, str]:
    """The environment of a fresh local stack in ``home`` (``rttm up``)."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_FOR_DEMOS}
    env[config.ENV_STATE_DIR] = str(home)
    up = subprocess.run(
        [sys.executable, "-m", "rttm", "up", "--partitions", "3"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if up.returncode != 0:
        raise RttmError(up.stderr.strip().splitlines()[-1].removeprefix("rttm: error: "))
    for line in up.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def _start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Child:
    log = logs / f"{name}.log"
    handle: IO[bytes] = log.open("wb")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, *args],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Child(name, process, log)


def _stop(children: list[Child]) -> list[str]:
    """Stop every child as Ctrl-C would; returns how those that did not stop cleanly ended."""
    for child in children:
        if child.process.poll() is None:
            os.killpg(child.process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    unclean = []
    for child in children:
        try:
            status = child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
            unclean.append(f"{child.name} killed after {STOP_GRACE_S:.0f} s")
            continue
        # 130: a run with an end of its own (the simulator's duration) that Ctrl-C cut short.
        if status not in (0, 128 + signal.SIGINT):
            unclean.append(f"{child.name} exited {status} ({log_tail(child.log, 1)})")
    return unclean


def _demo(args: argparse.Namespace) -> int:
    setup_logging()
    if not port_is_free(args.port):
        msg = f"port {args.port} is taken (another rttm serve?): choose one with --port"
        raise RttmError(msg)
    home = config.state_dir() / "demo"
    if stack.running_stack(home) is not None:
        msg = f"a demo is already running (its stack is in {home}); stop it first"
        raise RttmError(msg)
    # Ctrl-C and a plain `kill` both stop the demo cleanly, even when started from a
    # context that ignored SIGINT (a background job). No watchdog: the teardown bounds
    # itself (each child is killed after STOP_GRACE_S) and must not be cut short.
    stopping.install(watchdog=False)
    children: list[Child] = []
    try:
        stack.down(home, purge=True)  # a demo starts afresh (a crashed one's data too)
        shutil.rmtree(home, ignore_errors=True)
        env = _stack_env(home)
        env[receivers.ENV_DASHBOARD] = f"http://{LOCALHOST}:{args.port}"  # links in alerts
        env.pop(lag_commands.ENV_GROUP_REGEX, None)  # the demo's group only
        env[lag_commands.ENV_GROUPS] = f"{DEMO_GROUP}={DEMO_SERVICE}"
        logs = config.state_dir() / "demo-logs"  # kept after the demo, for a look back
        logs.mkdir(parents=True, exist_ok=True)
        say(f"demo stack up in {home}; starting the simulator, flows and dashboard")
        for name, command in (
            (
                "simulator",
                ["-m", "rttm", "simulate", "--rate", str(args.rate), "--duration", "86400"],
            ),
            # A business queue whose consumer reports nothing: the lag exporter watches it.
            (
                "orders",
                [
                    "-m",
                    "rttm.simulator.silent_consumer",
                    DEMO_QUEUE,
                    DEMO_GROUP,
                    "--keep-up",
                    "0.8",
                ],
            ),
            ("lag-exporter", ["-m", "rttm", "lag-exporter", "--interval", "5"]),
            ("ingest", ["-m", "rttm", "ingest"]),
            ("metrics", ["-m", "rttm", "metrics"]),
            # the local stack's superuser, on 127.0.0.1: a demo, not a deployment
            ("dashboard", ["-m", "rttm", "serve", "--port", str(args.port), "--allow-writer-role"]),
        ):
            children.append(_start(name, command, env, logs))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_answers(args.port) and not stopping.requested():
            _check(children)
            if time.monotonic() > deadline:
                msg = f"the dashboard did not answer on port {args.port} in {START_TIMEOUT_S:.0f} s"
                raise RttmError(msg)
            stopping.wait(0.2)
        if not stopping.requested():
            print(f"RTTM demo running: open http://{LOCALHOST}:{args.port}/", flush=True)
            # As `rttm up` prints them: paste (or eval) them to point the CLI at the demo.
            print_env({name: env[name] for name in (config.ENV_BROKERS, config.ENV_DATABASE_URL)})
            sys.stdout.flush()
            say(
                f"logs in {logs}; Ctrl-C stops the demo; the export lines above point "
                "`rttm status`, `rttm trace` and the rest at the demo"
            )
        while not stopping.wait(0.5):
            _check(children)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        unclean = _stop(children)
        stack.down(home, purge=True)  # as root its data lives under /var/lib/rttm-postgres
        shutil.rmtree(home, ignore_errors=True)
        received = stopping.received()
        how = f" on {received.name}" if received else ""
        ended = "; ".join(unclean) if unclean else "every process stopped cleanly"
        say(f"demo stopped{how}: {ended}; its stack is down and its data deleted")
    return 1 if unclean else 0


def _check(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is not None:
            msg = f"{child.name} stopped (exit {child.process.returncode}): {log_tail(child.log)}"
            raise RttmError(msg)
