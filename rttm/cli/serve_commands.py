"""``rttm serve``: the live dashboard, its JSON API and ``/metrics``."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from rttm import config, logs, stopping
from rttm.alerts import receivers
from rttm.cli import Subcommands, say
from rttm.cli.view_commands import bounded
from rttm.metrics.settings import pipeline_from_env
from rttm.stack.processes import LOCALHOST
from rttm.views import limits
from rttm.views.budget import DEFAULT_BUDGET_S
from rttm.views.common import open_view
from rttm.web.app import create_app

DEFAULT_PORT = 8765


def register(commands: Subcommands) -> None:
    """Add ``rttm serve``."""
    serve = commands.add_parser(
        "serve",
        help="the live web dashboard (JSON API under /api/, /metrics for Prometheus)",
        description="Serve the dashboard, its JSON API, /metrics, and the probes /healthz "
        "(alive) and /readyz (the database answers). Ctrl-C or SIGTERM stops it.",
    )
    serve.add_argument("--host", default=LOCALHOST,
                       help="address to bind (default 127.0.0.1: this machine only)")  # fmt: skip
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.add_argument(
        "--max-entries", type=bounded(int, *limits.MAX_ENTRIES_RANGE), metavar="N",
        help="entries per section of /api/status and /api/alerts, the worst first; the rest "
        f"are counted in `omitted` (default ${limits.ENV_MAX_ENTRIES} or "
        f"{limits.DEFAULT_MAX_ENTRIES})",
    )  # fmt: skip
    serve.add_argument(
        "--max-series", type=bounded(int, *limits.MAX_SERIES_RANGE), metavar="N",
        help="series per metric on /metrics, the highest values first (default "
        f"${limits.ENV_MAX_SERIES} or {limits.DEFAULT_MAX_SERIES:,})",
    )  # fmt: skip
    serve.add_argument(
        "--request-budget", type=bounded(float, *limits.BUDGET_RANGE), metavar="S",
        help="seconds a view request may take before it is answered 503 (default "
        f"${limits.ENV_REQUEST_BUDGET} or {DEFAULT_BUDGET_S:g})",
    )  # fmt: skip
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    logs.setup()
    bounds = limits.view_limits(args.max_entries, args.max_series, args.request_budget)
    managers = receivers.alertmanagers()  # a bad URL fails here, in one line
    url = config.database_url()
    with open_view(url):  # fail now, in one line, if the database cannot be reached
        pass
    anywhere = args.host in ("0.0.0.0", "::")  # noqa: S104 - the user asked for it
    hosts = None if anywhere else [args.host, "localhost", LOCALHOST]
    app = create_app(url, pipeline_from_env(), allowed_hosts=hosts, alertmanagers=managers,
                     limits=bounds)  # fmt: skip
    say(f"dashboard on http://{args.host}:{args.port}/ (API schema: /openapi.json; Ctrl-C stops)")
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then passes the signal on to the
    # handlers it found: ours, which note it instead of ending the process mid-sentence.
    stopping.install(watchdog=False)  # uvicorn bounds its shutdown; it re-raises every signal
    # uvicorn logs through the root logger set up above (RTTM_LOG_FORMAT, RTTM_LOG_LEVEL);
    # its lines below WARNING (each request, start-up banners) only at DEBUG.
    quiet = "debug" if logs.level() <= logging.DEBUG else "warning"
    uvicorn.run(app, host=args.host, port=args.port, log_level=quiet, log_config=None)
    received = stopping.received()
    say(f"dashboard stopped on {received.name}" if received else "dashboard stopped")
    return 0
