"""A flow's ``--metrics-port`` beyond 127.0.0.1: credentials as Prometheus sends them.

The port is served for real (``rttm.ops.metrics_port.serve``) and asked over HTTP: no
credentials, wrong ones, a right password (``basic_auth``) and a right bearer token
(``authorization``); the probes stay open. ``rttm ingest`` and ``rttm metrics`` refuse a
non-loopback ``--metrics-host`` without credentials in one line, before anything starts.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from rttm.core.addresses import LOCALHOST
from rttm.ops import health, metrics_port
from rttm.stack.processes import free_port
from rttm.web.auth import Authenticator
from tests.ingest_helpers import REPO

TOKEN = "scrape-token-0123456789abcdef0123456789abcdef"  # noqa: S105 - a test's own token


def credentials(directory: Path) -> tuple[Path, Path]:
    """An htpasswd file of one bcrypt user and a token file of one hashed token (0600)."""
    users = directory / "users"
    users.write_text(f"prometheus:{bcrypt.hashpw(b'scrape-pw', bcrypt.gensalt(4)).decode()}\n")
    tokens = directory / "tokens"
    tokens.write_text(f"prometheus:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
    for path in (users, tokens):
        path.chmod(0o600)
    return users, tokens


def get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url)  # noqa: S310 - a test server
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers)


def test_the_metrics_port_wants_credentials_and_keeps_its_probes_open(tmp_path: Path) -> None:
    users, tokens = credentials(tmp_path)
    port = free_port()
    metrics_port.serve(
        port, health.Readiness([]), LOCALHOST, Authenticator.from_files(users, tokens)
    )
    base = f"http://{LOCALHOST}:{port}"
    status, headers = get(f"{base}/metrics")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    basic = base64.b64encode(b"prometheus:scrape-pw").decode()
    wrong = base64.b64encode(b"prometheus:guess").decode()
    assert get(f"{base}/metrics", f"Basic {wrong}")[0] == 401
    assert get(f"{base}/metrics", "Bearer not-the-token")[0] == 401
    assert get(f"{base}/metrics", f"Basic {basic}")[0] == 200
    assert get(f"{base}/metrics", f"Bearer {TOKEN}")[0] == 200
    assert get(f"{base}/healthz")[0] == 200
    assert get(f"{base}/readyz")[0] == 200


@pytest.mark.parametrize("command", ["ingest", "metrics"])
def test_an_open_metrics_port_beyond_loopback_is_refused_in_one_line(command: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rttm",
            command,
            "--metrics-port",
            str(free_port()),
            "--metrics-host",
            "0.0.0.0",  # noqa: S104 - refused, never bound
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("rttm: error: --metrics-host 0.0.0.0 would show")
    assert "--metrics-auth-file" in result.stderr
    assert "--metrics-unauthenticated" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
