"""``--metrics-port``: this process's Prometheus registry and its health, on 127.0.0.1 only.

``/metrics`` is the default registry; ``/healthz`` answers 200 while the process runs;
``/readyz`` answers 200, or 503 with the reason of :class:`rttm.health.Readiness`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from rttm.errors import RttmError
from rttm.health import Readiness
from rttm.stack.processes import LOCALHOST

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request: a slow readiness probe never holds up a scrape."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes come every few seconds: not worth a line each."""


def app(readiness: Readiness) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """The WSGI app: ``/healthz``, ``/readyz``, and the registry everywhere else."""
    metrics = make_wsgi_app()

    def route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok")
        if path == "/readyz":
            reason = readiness.reason()
            if reason is None:
                return _text(start_response, "200 OK", "ready")
            return _text(start_response, "503 Service Unavailable", reason)
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return route


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = f"{body}\n".encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data)))])  # fmt: skip
    return [data]


def serve(port: int, readiness: Readiness) -> None:
    """Serve on 127.0.0.1:``port`` from a daemon thread; a taken port is a one-line error."""
    try:
        server = make_server(LOCALHOST, port, app(readiness), _Server, _QuietHandler)
    except OSError as exc:
        msg = f"cannot serve metrics on {LOCALHOST}:{port}: {exc.strerror or exc}"
        raise RttmError(msg) from None
    threading.Thread(target=server.serve_forever, name="rttm-metrics-port", daemon=True).start()
