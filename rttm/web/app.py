"""The dashboard's web app: the page, its JSON API under ``/api/``, ``/metrics``, probes.

Every API answer is computed from PostgreSQL on request (a connection each; the page polls
every 2 s), so several servers, or a server restarted, show the same. FastAPI documents the
API at ``/openapi.json``. The page loads nothing from elsewhere, and
the Content-Security-Policy forbids it (scripts from this server only, no inline code).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rttm import __version__, health
from rttm.alerts.receivers import Receiver
from rttm.alerts.silences import SilencedLookup
from rttm.errors import RttmError
from rttm.metrics import pipeline as pipelines
from rttm.metrics.pipeline import Pipeline
from rttm.views import alerts as alert_view
from rttm.views import status as status_view
from rttm.views import trace as trace_view
from rttm.views.common import open_view, query_failed
from rttm.web.prom import DatabaseCollector

_LOG = logging.getLogger("rttm.serve")
STATIC = Path(str(resources.files(__package__) / "static"))
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
       " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")  # fmt: skip


def create_app(
    database_url: str,
    pipeline: Pipeline | None = None,
    allowed_hosts: Sequence[str] | None = None,
    alertmanagers: Sequence[Receiver] = (),
) -> FastAPI:
    """The app for the database at ``database_url`` (the pipeline names trade stages).

    ``allowed_hosts``: the ``Host`` headers to answer (a page of another site that rebinds
    its name to 127.0.0.1 must not read the API); None answers any. ``alertmanagers``: where
    ``/api/alerts`` learns which alerts are silenced.
    """
    stages = pipeline or pipelines.load()
    about = "Real-time trade monitoring: status, alerts and trade traces."
    # No Swagger/ReDoc pages: they load scripts from a CDN, which the CSP forbids;
    # the schema is at /openapi.json.
    app = FastAPI(title="RTTM", version=__version__, description=about, docs_url=None,
                  redoc_url=None)  # fmt: skip
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(database_url))
    silenced = SilencedLookup(alertmanagers)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(RttmError)
    async def database_unavailable(_request: Request, exc: RttmError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(psycopg.Error)
    async def query_refused(_request: Request, exc: psycopg.Error) -> JSONResponse:
        return JSONResponse({"detail": str(query_failed(database_url, exc))}, status_code=503)

    @app.get("/api/status", summary="Platform health over the last minutes")
    def get_status(minutes: int = Query(15, ge=1, le=1440)) -> dict[str, Any]:
        with open_view(database_url) as conn:
            return status_view.status(conn, minutes)

    @app.get("/api/alerts", summary="Firing and pending alerts, and recent transitions")
    def get_alerts(limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        with open_view(database_url) as conn:
            return alert_view.alerts(conn, limit, silenced.silenced())

    @app.get("/api/trace/{trade_id:path}", summary="One trade's timeline across services",
             responses={404: {"description": "no event of this trade is stored"}})  # fmt: skip
    def get_trace(trade_id: str) -> dict[str, Any]:
        with open_view(database_url) as conn:
            found = trace_view.trace(conn, trade_id, stages)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no trade {trade_id!r}")
        return found

    readiness = health.Readiness([health.database(database_url)])
    reported: list[str | None] = [None]

    @app.get("/healthz", summary="Liveness: 200 while the server runs",
             response_class=PlainTextResponse)  # fmt: skip
    def get_healthz() -> str:
        return "ok\n"

    @app.get("/readyz", summary="Readiness: 200 when the database answers, else 503 and why",
             response_class=PlainTextResponse,
             responses={503: {"description": "not ready: the reason, one line"}})  # fmt: skip
    def get_readyz() -> PlainTextResponse:
        reason = readiness.reason()
        if reason != reported[0]:  # the whole reason goes to the log, once per change
            reported[0] = reason
            if reason is None:
                _LOG.warning("ready again")
            else:
                _LOG.warning("not ready: %s", reason)
        if reason is None:
            return PlainTextResponse("ready\n")
        # Only what failed: the server's address and libpq's words stay in the log, since
        # this port may face more people than the database's does.
        return PlainTextResponse(f"{reason.split(':')[0]}\n", status_code=503)

    @app.get("/metrics", summary="Prometheus exposition", response_class=Response)
    def get_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app
