"""Calls to receivers: every answer sorted into sent, refused or failed, and none raises."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rttm.alerts.http_client import Outcome, call
from rttm.stack.processes import free_port

#: path -> (status, extra headers, body) the test server answers.
ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/ok": (200, {}, b"{}"),
    "/bad": (400, {}, b"  bad\n  payload  "),
    "/busy": (503, {}, b"maintenance"),
    "/slow-down": (429, {}, b""),
    "/moved": (302, {"Location": "/elsewhere"}, b""),
}


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            seen.append((self.command, self.path))
            status, headers, body = ANSWERS.get(self.path, (404, {}, b""))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("path", "outcome", "detail"),
    [
        ("/ok", Outcome.SENT, "HTTP 200"),
        ("/bad", Outcome.REFUSED, "HTTP 400: bad payload"),  # one line
        ("/busy", Outcome.FAILED, "HTTP 503: maintenance"),
        ("/slow-down", Outcome.FAILED, "HTTP 429"),
        ("/moved", Outcome.REFUSED, "HTTP 302: redirect to /elsewhere not followed"),
    ],
)
def test_answers_are_sorted(
    server: tuple[str, list[tuple[str, str]]], path: str, outcome: Outcome, detail: str
) -> None:
    url, seen = server
    answer = call("POST", url + path, [{"labels": {}}], {"Authorization": "Basic x"})
    assert (answer.outcome, answer.detail) == (outcome, detail)
    assert seen == [("POST", path)]  # a redirect is not followed


def test_no_server_and_a_server_that_does_not_speak_http_are_failures() -> None:
    assert call("POST", f"http://127.0.0.1:{free_port()}/", []).outcome is Outcome.FAILED
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def garbage() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-OpenSSH\r\n")
            conn.close()

        threading.Thread(target=garbage, daemon=True).start()
        answer = call("POST", f"http://127.0.0.1:{listener.getsockname()[1]}/", [])
    assert answer.outcome is Outcome.FAILED
