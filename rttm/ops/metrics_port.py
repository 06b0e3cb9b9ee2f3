"""``--metrics-port``: this process's Prometheus registry and its health.

``/metrics`` is the default registry; ``/healthz`` answers 200 while the process runs;
``/readyz`` answers 200, or 503 with the reason of :class:`rttm.ops.health.Readiness`.

It binds 127.0.0.1 unless ``--metrics-host`` says otherwise. Another address needs
credentials, as Prometheus' scrape configs send them (``basic_auth``, ``authorization`` with
a bearer token): ``--metrics-auth-file`` (htpasswd, bcrypt) and ``--metrics-token-file``,
checked by ``rttm serve``'s :class:`~rttm.web.auth.Authenticator`; or, on a network the
operator trusts, an explicit ``--metrics-unauthenticated``. The probes stay open either way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from rttm.core.addresses import LOCALHOST
from rttm.core.errors import RttmError
from rttm.ops.health import Readiness
from rttm.web.auth import Authenticator

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request: a slow readiness probe never holds up a scrape."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes come every few seconds: not worth a line each."""


def app(
    readiness: Readiness, authenticator: Authenticator | None = None
) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """The WSGI app: ``/healthz``, ``/readyz``, and the registry everywhere else.

    With an ``authenticator``, the registry needs credentials (the probes do not).
    """
    metrics = make_wsgi_app()

    def route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if authenticator is not None and path not in ("/healthz", "/readyz"):
            verdict = authenticator.check(
                environ.get("HTTP_AUTHORIZATION"), str(environ.get("REMOTE_ADDR", ""))
            )
            if verdict.status == 429:
                return _text(
                    start_response,
                    "429 Too Many Requests",
                    "too many failed sign-ins",
                    [("Retry-After", str(verdict.retry_after_s))],
                )
            if not verdict.allowed:
                challenges = [("WWW-Authenticate", value) for value in authenticator.challenges()]
                return _text(start_response, "401 Unauthorized", "credentials needed", challenges)
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok")
        if path == "/readyz":
            reason = readiness.reason()
            if reason is None:
                return _text(start_response, "200 OK", "ready")
            return _text(start_response, "503 Service Unavailable", reason)
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return route


def _text(
    start_response: StartResponse, status: str, body: str, headers: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    data = f"{body}\n".encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *headers,
        ],
    )
    return [data]


def serve(
    port: int,
    readiness: Readiness,
    host: str = LOCALHOST,
    authenticator: Authenticator | None = None,
) -> None:
    """Serve on ``host``:``port`` from a daemon thread; a taken port is a one-line error."""
    try:
        server = make_server(host, port, app(readiness, authenticator), _Server, _QuietHandler)
    except OSError as exc:
        msg = f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        raise RttmError(msg) from None
    threading.Thread(target=server.serve_forever, name="rttm-metrics-port", daemon=True).start()
