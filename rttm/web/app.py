"""The dashboard's web app: the page, its JSON API under ``/api/``, ``/metrics``, probes.

Every API answer is computed from PostgreSQL on request (a connection each; the page polls
every 2 s), so several servers, or a server restarted, show the same. FastAPI documents the
API at ``/openapi.json``. The page loads nothing from elsewhere, and
the Content-Security-Policy forbids it (scripts from this server only, no inline code).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import Receive, Scope, Send

from rttm import __version__
from rttm.alerts.receivers import Receiver
from rttm.alerts.silences import SilencedLookup
from rttm.core.errors import RttmError
from rttm.metrics import pipeline as pipelines
from rttm.metrics.pipeline import Pipeline
from rttm.ops import health
from rttm.views import alerts as alert_view
from rttm.views import status as status_view
from rttm.views import trace as trace_view
from rttm.views.budget import Deadline, Gate
from rttm.views.common import open_view
from rttm.views.limits import ViewLimits
from rttm.web.auth import Authenticator
from rttm.web.auth_middleware import OPEN_PATHS, AuthMiddleware
from rttm.web.failures import query_failed_detail, unavailable_detail
from rttm.web.prom import DatabaseCollector

_LOG = logging.getLogger(__name__)
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "the database is away, the request is past its time budget, or busy"}
}
STATIC = Path(str(resources.files(__package__) / "static"))
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)


class _HostCheck(TrustedHostMiddleware):
    """Starlette's Host allow-list, but not for the probes.

    The kubelet and load balancers call ``/healthz`` and ``/readyz`` with the pod's address
    or a service name as ``Host``; the probes say only "alive" and "ready", so a rebinding
    page learns nothing from them.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    database_url: str,
    pipeline: Pipeline | None = None,
    allowed_hosts: Sequence[str] | None = None,
    alertmanagers: Sequence[Receiver] = (),
    limits: ViewLimits | None = None,
    authenticator: Authenticator | None = None,
    tls: bool = False,
) -> FastAPI:
    """The app for the database at ``database_url`` (the pipeline names trade stages).

    ``allowed_hosts``: the ``Host`` headers to answer (a page of another site that rebinds
    its name to 127.0.0.1 must not read the API); None answers any. ``alertmanagers``: where
    ``/api/alerts`` learns which alerts are silenced. ``limits``: entries per section, series
    per metric, each request's time budget and how many heavy requests run at once
    (:mod:`rttm.views.limits`; a request past its budget, or refused as one too many, is
    answered 503 with one line). ``authenticator``: who may ask; every path but the probes
    needs credentials (:mod:`rttm.web.auth_middleware`); None lets anyone in. ``tls``:
    served over HTTPS, so browsers are told to keep to it (``Strict-Transport-Security``).
    """
    bounds = limits or ViewLimits()
    heavy = Gate(bounds.concurrent)
    stages = pipeline or pipelines.load()
    about = "Real-time trade monitoring: status, alerts and trade traces."
    # No Swagger/ReDoc pages: they load scripts from a CDN, which the CSP forbids;
    # the schema is at /openapi.json.
    app = FastAPI(
        title="RTTM", version=__version__, description=about, docs_url=None, redoc_url=None
    )
    if authenticator is not None:  # added first: runs after the Host check, inside the headers
        app.add_middleware(AuthMiddleware, authenticator=authenticator)
    if allowed_hosts is not None:
        app.add_middleware(_HostCheck, allowed_hosts=list(allowed_hosts))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(database_url, bounds.max_series, bounds.budget_s))
    silenced = SilencedLookup(alertmanagers)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @app.exception_handler(RttmError)
    async def database_unavailable(_request: Request, exc: RttmError) -> JSONResponse:
        return JSONResponse({"detail": unavailable_detail(exc)}, status_code=503)

    @app.exception_handler(psycopg.Error)
    async def query_refused(_request: Request, exc: psycopg.Error) -> JSONResponse:
        return JSONResponse({"detail": query_failed_detail(database_url, exc)}, status_code=503)

    @app.get(
        "/api/status",
        summary="Platform health over the last minutes",
        description="Each list holds at most `--max-entries` entries, the worst first; "
        "the `omitted` object next to a list counts those left out.",
        responses=_UNAVAILABLE,
    )
    def get_status(minutes: int = Query(15, ge=1, le=1440)) -> dict[str, Any]:
        deadline = Deadline(bounds.budget_s, "status")
        with heavy.enter("status"), open_view(database_url) as conn:
            return status_view.status(conn, minutes, bounds.max_entries, deadline)

    @app.get(
        "/api/alerts",
        summary="Firing and pending alerts, and recent transitions",
        description="At most `--max-entries` alerts per state and transitions; "
        "`omitted` counts those left out (`firing`, `pending`, `recent`).",
        responses=_UNAVAILABLE,
    )
    def get_alerts(limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        deadline = Deadline(bounds.budget_s, "alerts")
        with heavy.enter("alerts"), open_view(database_url) as conn:
            return alert_view.alerts(conn, limit, silenced.silenced(), bounds.max_entries, deadline)

    @app.get(
        "/api/trace/{trade_id:path}",
        summary="One trade's timeline across services",
        description="The newest `limit` events (oldest first), `total`, and `next`: "
        "the `before` cursor of the next older page (null on the last). DLQ entries, "
        "errors and logs are the newest few, with their totals. Texts longer than "
        f"{trace_view.TEXT_CHARS} characters are cut (`…_truncated`, `…_length`); "
        "`/api/text/{source}` has them whole.",
        responses={
            400: {"description": "malformed `before` cursor"},
            404: {"description": "no event of this trade is stored"},
            **_UNAVAILABLE,
        },
    )
    def get_trace(
        trade_id: str,
        limit: int = Query(
            trace_view.DEFAULT_LIMIT, ge=1, le=trace_view.MAX_LIMIT, description="events per page"
        ),
        before: str | None = Query(
            None, max_length=200, description="the `next` of the previous page"
        ),
    ) -> dict[str, Any]:
        if "\x00" in trade_id:  # PostgreSQL text cannot hold NUL: no stored trade has it
            raise HTTPException(status_code=404, detail=f"no trade {trade_id!r}")
        try:
            cursor = None if before is None else trace_view.decode_cursor(before)
        except trace_view.BadCursor as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        deadline = Deadline(bounds.budget_s, "trace")
        with heavy.enter("trace"), open_view(database_url) as conn:
            found = trace_view.trace(conn, trade_id, stages, limit, cursor, deadline)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no trade {trade_id!r}")
        return found

    @app.get(
        "/api/text/{source}",
        summary="The whole text a trade trace lists cut",
        description="An event's or log line's message, a DLQ entry's reason or an "
        "error's message, by the `key` and `time` of its trace entry.",
        responses={404: {"description": "no such row"}},
    )
    def get_text(
        source: trace_view.TextSource,
        key: Annotated[str, Query(description="the entry's `key`")],
        time: Annotated[datetime, Query(description="the entry's `time` (UTC if no offset)")],
    ) -> dict[str, Any]:
        if "\x00" in key:  # as in get_trace: not a key any row has
            raise HTTPException(status_code=404, detail=f"no {source} entry {key!r} at {time}")
        deadline = Deadline(bounds.budget_s, "text")
        with heavy.enter("text"), open_view(database_url) as conn:
            text = trace_view.full_text(conn, source, key, time, deadline)
        if text is None:
            raise HTTPException(status_code=404, detail=f"no {source} entry {key!r} at {time}")
        return {"source": source, "key": key, "text": text, "length": len(text)}

    readiness = health.Readiness([health.database(database_url)])
    reported: list[str | None] = [None]

    @app.get(
        "/healthz", summary="Liveness: 200 while the server runs", response_class=PlainTextResponse
    )
    def get_healthz() -> str:
        return "ok\n"

    @app.get(
        "/readyz",
        summary="Readiness: 200 when the database answers, else 503 and why",
        response_class=PlainTextResponse,
        responses={503: {"description": "not ready: the reason, one line"}},
    )
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
        with heavy.enter("metrics"):
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app
