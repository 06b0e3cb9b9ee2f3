"""``rttm serve``: the live dashboard, its JSON API and ``/metrics``."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from rttm.alerts import receivers
from rttm.cli import Subcommands, add_command, say, serve_security
from rttm.cli.view_commands import bounded
from rttm.core import config, logs, stopping
from rttm.core.addresses import LOCALHOST
from rttm.core.db import roles
from rttm.core.db.connect import connect
from rttm.core.errors import RttmError
from rttm.metrics.settings import pipeline_from_env
from rttm.views import limits
from rttm.views.budget import DEFAULT_BUDGET_S
from rttm.views.common import open_view
from rttm.web.app import create_app

DEFAULT_PORT = 8765


def register(commands: Subcommands) -> None:
    """Add ``rttm serve``."""
    serve = add_command(
        commands,
        "serve",
        help="the live web dashboard (JSON API under /api/, /metrics for Prometheus)",
        description="Serve the dashboard, its JSON API, /metrics, and the probes /healthz "
        "(alive) and /readyz (the database answers). Ctrl-C or SIGTERM stops it.",
    )
    serve.add_argument(
        "--host",
        default=LOCALHOST,
        help="address to bind (default 127.0.0.1: this machine only; any other "
        "needs --auth-file, --token-file or --trust-proxy)",
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.add_argument(
        "--max-entries",
        type=bounded(int, *limits.MAX_ENTRIES_RANGE),
        metavar="N",
        help="entries per section of /api/status and /api/alerts, the worst first; the rest "
        f"are counted in `omitted` (default ${limits.ENV_MAX_ENTRIES} or "
        f"{limits.DEFAULT_MAX_ENTRIES})",
    )
    serve.add_argument(
        "--max-series",
        type=bounded(int, *limits.MAX_SERIES_RANGE),
        metavar="N",
        help="series per metric on /metrics, the highest values first (default "
        f"${limits.ENV_MAX_SERIES} or {limits.DEFAULT_MAX_SERIES:,})",
    )
    serve.add_argument(
        "--request-budget",
        type=bounded(float, *limits.BUDGET_RANGE),
        metavar="S",
        help="seconds a view request may take before it is answered 503 (default "
        f"${limits.ENV_REQUEST_BUDGET} or {DEFAULT_BUDGET_S:g})",
    )
    serve_security.add_arguments(serve)
    serve.add_argument(
        "--allow-writer-role",
        action="store_true",
        help="run even though the database role can write (by default a role"
        " with more than SELECT is refused: rttm db grant-viewer ROLE)",
    )
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    logs.setup()
    security = serve_security.from_args(args)  # before the database: refusals come first
    bounds = limits.view_limits(args.max_entries, args.max_series, args.request_budget)
    managers = receivers.alertmanagers()  # a bad URL fails here, in one line
    url = config.database_url()
    with open_view(url):  # fail now, in one line, if the database cannot be reached
        pass
    if not args.allow_writer_role:
        refuse_writer_role(url)
    tls = security.tls
    app = create_app(
        url,
        pipeline_from_env(),
        allowed_hosts=security.allowed_hosts,
        alertmanagers=managers,
        limits=bounds,
        authenticator=security.authenticator,
        tls=tls is not None,
    )
    scheme = "https" if tls else "http"
    say(
        f"dashboard on {scheme}://{args.host}:{args.port}/ (API schema: /openapi.json; "
        "Ctrl-C stops)"
    )
    for note in security.notes:
        say(note)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then passes the signal on to the
    # handlers it found: ours, which note it instead of ending the process mid-sentence.
    stopping.install(watchdog=False)  # uvicorn bounds its shutdown; it re-raises every signal
    # uvicorn logs through the root logger set up above (RTTM_LOG_FORMAT, RTTM_LOG_LEVEL);
    # its lines below WARNING (each request, start-up banners) only at DEBUG.
    quiet = "debug" if logs.level() <= logging.DEBUG else "warning"
    # proxy_headers off: uvicorn would otherwise take the client's address from
    # X-Forwarded-For sent through 127.0.0.1, and --trust-proxy and the sign-in throttle
    # must see the address that really connected.
    # lifespan off: the app has no start-up or shut-down hooks, and uvicorn's lifespan task,
    # cancelled by a second Ctrl-C during shutdown, would log a CancelledError traceback.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=quiet,
        log_config=None,
        proxy_headers=False,
        lifespan="off",
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
    )
    received = stopping.received()
    say(f"dashboard stopped on {received.name}" if received else "dashboard stopped")
    return 0


def refuse_writer_role(url: str) -> None:
    """Refuse, in one line, a database role that could change what the dashboard shows.

    The dashboard only reads; a role that can write would let a flaw in it, or anyone who
    takes over its process, change or delete the record.
    """
    with connect(url, autocommit=True) as conn:
        found = roles.write_access(conn)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        msg = (
            f"the dashboard's database role can write ({shown}): give rttm serve a role made"
            " with `rttm db grant-viewer ROLE`, or pass --allow-writer-role"
        )
        raise RttmError(msg)
