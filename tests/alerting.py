"""Real receivers for the delivery tests: Debian's Alertmanager and a small webhook server.

Alertmanager runs on a free port of 127.0.0.1 with its own config and storage, no cluster
listener; it routes everything to the test's webhook server, so a test sees both what
Alertmanager holds (``GET /api/v2/alerts``) and what it would page with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rttm.stack.processes import free_port

#: Debian names the binary prometheus-alertmanager; upstream's release names it alertmanager.
BINARIES = ("prometheus-alertmanager", "alertmanager")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - test servers
        return json.loads(response.read())


@dataclass
class Received:
    """One request the webhook server got."""

    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    """An HTTP server on 127.0.0.1 that records POSTs and answers ``status`` (200 default).

    ``statuses``, when given, are answered first, one per request. ``stop()`` closes the
    port (a receiver that is down); ``start()`` opens the same port.
    """

    port: int = field(default_factory=free_port)
    status: int = 200
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                owner.received.append(Received(self.path, headers, body))
                status = owner.statuses.pop(0) if owner.statuses else owner.status
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"bad payload" if status >= 400 else b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def payloads(self) -> list[Any]:
        return [r.json() for r in self.received]


def alertmanager_binary() -> str:
    for name in BINARIES:
        if found := shutil.which(name):
            return found
    msg = "Alertmanager is not installed: run ./dev setup (Debian package prometheus-alertmanager)"
    raise RuntimeError(msg)


@dataclass
class Alertmanager:
    """A real Alertmanager process; ``stop()`` and ``start()`` keep its port and storage."""

    directory: Path
    webhook_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.directory / "alertmanager.yml"
        config.write_text(
            "route:\n"
            "  receiver: test-hook\n"
            "  group_by: [alertname]\n"
            "  group_wait: 0s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 1h\n"
            "receivers:\n"
            "  - name: test-hook\n"
            "    webhook_configs:\n"
            f"      - url: {json.dumps(self.webhook_url)}\n"
            "        send_resolved: true\n"
        )
        with (self.directory / "alertmanager.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    alertmanager_binary(),
                    f"--config.file={config}",
                    f"--storage.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"alertmanager exited: {(self.directory / 'alertmanager.log').read_text()}"
                raise RuntimeError(msg)
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.1)
        msg = "alertmanager did not become ready in 20 s"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: what Alertmanager holds now (resolved ones are not listed)."""
        found: list[dict[str, Any]] = get_json(f"{self.url}/api/v2/alerts")
        return found

    def silences(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = get_json(f"{self.url}/api/v2/silences")
        return found


def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    """The first truthy result of ``check()``; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:g} s waiting for {check.__name__}"
            raise AssertionError(msg)
        time.sleep(every)
