"""``--metrics-port``: serve this process's Prometheus registry on 127.0.0.1 only."""

from __future__ import annotations

from prometheus_client import start_http_server

from rttm.errors import RttmError
from rttm.stack.processes import LOCALHOST


def serve(port: int) -> None:
    """Serve the default registry on 127.0.0.1:``port`` from a daemon thread."""
    try:
        start_http_server(port, addr=LOCALHOST)
    except OSError as exc:
        msg = f"cannot serve metrics on {LOCALHOST}:{port}: {exc.strerror or exc}"
        raise RttmError(msg) from None
