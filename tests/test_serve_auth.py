"""``rttm serve``'s operator surface: sign-in, throttling, proxy mode, TLS, refusals, 503s.

Requests go over real HTTP to the app under uvicorn (``tests.servers.serving``) or to a
real ``rttm serve`` process, against a real PostgreSQL. Password hashes use bcrypt's
lowest cost (4) so the checks are quick; the code paths are those of cost 12.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import hypothesis
import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given

from rttm.cli.serve_security import is_loopback
from rttm.core.addresses import LOCALHOST
from rttm.core.config import ConfigError
from rttm.stack.processes import free_port
from rttm.web.app import create_app
from rttm.web.auth import Authenticator, Verdict
from rttm.web.credentials import read_tokens, read_users
from rttm.web.throttle import Throttle
from tests.ingest_helpers import REPO
from tests.servers import serving
from tests.tls import make_certificates

pytestmark = pytest.mark.integration

TOKEN = "k3y-" + "x" * 40
PEOPLE = {"alice": "correct horse", "bob": "battery staple", "jörg": "pässwörd"}
CHALLENGE = 'Basic realm="rttm", charset="UTF-8"'
#: The bind address of every interface.
WIDE = "0.0.0.0"  # noqa: S104 - the point of the refusal tests
GUARDED = ("/", "/api/status", "/metrics", "/openapi.json")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str


def fetch(
    base: str,
    path: str,
    headers: Mapping[str, str | bytes] | None = None,
    context: ssl.SSLContext | None = None,
) -> Answer:
    """GET ``base + path`` with exactly these headers (bytes values go out as they are)."""
    parts = urlsplit(base)
    assert parts.hostname is not None
    assert parts.port is not None
    conn = (
        http.client.HTTPSConnection(parts.hostname, parts.port, timeout=10, context=context)
        if parts.scheme == "https"
        else http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    )
    try:
        conn.putrequest("GET", path)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        answer = conn.getresponse()
        return Answer(answer.status, answer.headers, answer.read().decode("utf-8", "replace"))
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    raw = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def private(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def htpasswd_line(user: str, password: str, prefix: str = "$2b$") -> str:
    """What ``htpasswd -B`` ($2y$) or crypt/pyca bcrypt ($2b$) writes, at cost 4."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    return f"{user}:{prefix}{hashed.removeprefix('$2b$')}"


@pytest.fixture(scope="module")
def auth_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An htpasswd file (alice $2b$, bob $2y$ as Apache writes it, jörg) and a token file."""
    folder = tmp_path_factory.mktemp("auth")
    lines = [
        htpasswd_line("alice", PEOPLE["alice"]),
        "# a comment",
        htpasswd_line("bob", PEOPLE["bob"], "$2y$"),
        htpasswd_line("jörg", PEOPLE["jörg"]),
    ]
    users = private(folder / "htpasswd", "\n".join(lines) + "\n")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    tokens = private(folder / "tokens", f"prometheus:{digest}\n")
    return users, tokens


def authenticator(files: tuple[Path, Path], throttle: Throttle | None = None) -> Authenticator:
    made = Authenticator.from_files(*files)
    # These tests fail on purpose, more often than the throttle allows.
    made.throttle = throttle if throttle is not None else Throttle(limit=10_000)
    return made


@pytest.fixture
def guarded(migrated_db: str, auth_files: tuple[Path, Path]) -> Iterator[str]:
    with serving(create_app(migrated_db, authenticator=authenticator(auth_files))) as base:
        yield base


def test_every_path_but_the_probes_needs_credentials(guarded: str) -> None:
    for path in ("/healthz", "/readyz"):
        assert fetch(guarded, path).status == 200
    for path in GUARDED:
        refused = fetch(guarded, path)
        assert refused.status == 401, path
        assert refused.headers.get_all("WWW-Authenticate") == [CHALLENGE, 'Bearer realm="rttm"']
        assert refused.headers["Content-Security-Policy"]  # the security headers still apply
        for wrong in (
            basic("alice", "wrong"),
            basic("nobody", "x"),
            {"Authorization": "Bearer not-the-token"},
        ):
            assert fetch(guarded, path, wrong).status == 401, (path, wrong)
        for user, password in PEOPLE.items():  # $2b$, $2y$, and a non-ASCII user name
            assert fetch(guarded, path, basic(user, password)).status == 200, (path, user)
        assert fetch(guarded, path, {"Authorization": f"Bearer {TOKEN}"}).status == 200


MALFORMED: list[str | bytes] = [
    "",
    "Basic",
    "Basic ",
    "Basic !!!not-base64!!!",
    "Basic " + "A" * 9000,
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b":no-user").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:not-utf-8").decode(),
    "Basic " + base64.b64encode("☃\x1b[31m:x".encode()).decode(),
    "Basic " + base64.b64encode(b"alice:" + b"p" * 500).decode(),
    b"Basic \xff\xfe\x80",
    b"Bearer \xc3\x28",
    "Bearer",
    "Bearer " + "t" * 3000,
    "Digest username=alice",
    "basic",
    "NTLM",
    "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==junk",
]


def test_malformed_authorization_headers_are_refused_not_failed(
    guarded: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "rttm.web")
    for header in MALFORMED:
        answer = fetch(guarded, "/api/status", {"Authorization": header})
        assert answer.status == 401, (header, answer.body)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("rttm.web."))
    assert "sign-in failed for user '☃?[31m' from 127.0.0.1" in logged  # no escape codes
    assert "not-utf-8" not in logged  # passwords are never logged
    assert "pppp" not in logged


def test_repeated_failures_are_answered_429_for_a_while(
    migrated_db: str, auth_files: tuple[Path, Path]
) -> None:
    auth = authenticator(auth_files, Throttle(limit=3, window_s=60, block_s=30))
    with serving(create_app(migrated_db, authenticator=auth)) as base:
        assert [fetch(base, "/api/status", basic("alice", "guess")).status for _ in range(2)] == [
            401,
            401,
        ]
        blocked = fetch(base, "/api/status", basic("alice", "guess"))
        assert blocked.status == 429
        assert 25 <= int(blocked.headers["Retry-After"]) <= 30
        right = fetch(base, "/api/status", basic("alice", PEOPLE["alice"]))
        assert right.status == 429  # blocked is blocked: no bcrypt spent on it either
        assert fetch(base, "/healthz").status == 200
    # Another address is not affected; the same one is let in once its time is up.
    header = basic("alice", PEOPLE["alice"])["Authorization"]
    assert auth.check(header, "10.1.2.3").allowed
    assert auth.check(header, "127.0.0.1").status == 429


def test_the_throttle_forgets_and_stays_bounded() -> None:
    now = [0.0]
    throttle = Throttle(limit=2, window_s=10, block_s=5, max_addresses=100, clock=lambda: now[0])
    assert not throttle.failed("10.0.0.1")
    now[0] = 11.0  # the first failure has left the window
    assert not throttle.failed("10.0.0.1")
    assert throttle.failed("10.0.0.1")
    assert throttle.blocked_for("10.0.0.1") == 5.0
    assert throttle.blocked_for("2001:db8::1") == 0.0
    throttle.failed("2001:db8::1")
    assert throttle.failed("2001:db8::2")  # the same /64: one host
    now[0] = 16.5
    assert throttle.blocked_for("10.0.0.1") == 0.0
    for n in range(1000):
        throttle.failed(f"10.1.{n // 256}.{n % 256}")
    assert len(throttle) == 100


def test_a_trusted_proxy_names_the_user_and_no_one_else_can(migrated_db: str) -> None:
    named = {"X-Forwarded-User": "carol@example.com"}
    trusted = Authenticator(proxies=["127.0.0.1"])
    with serving(create_app(migrated_db, authenticator=trusted)) as base:
        assert fetch(base, "/api/status", named).status == 200
        assert fetch(base, "/api/status").status == 401
    elsewhere = Authenticator(proxies=["10.9.9.9"])
    with serving(create_app(migrated_db, authenticator=elsewhere)) as base:
        assert fetch(base, "/api/status", named).status == 401


def test_https_with_hsts_for_clients_that_trust_the_authority(
    migrated_db: str, auth_files: tuple[Path, Path], tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "tls")
    app = create_app(migrated_db, authenticator=authenticator(auth_files), tls=True)
    with serving(app, ssl_certfile=str(certs.cert), ssl_keyfile=str(certs.key)) as base:
        trusting = ssl.create_default_context(cafile=str(certs.ca))
        answer = fetch(base, "/api/status", basic("alice", PEOPLE["alice"]), trusting)
        assert answer.status == 200
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
        with pytest.raises(ssl.SSLCertVerificationError):
            fetch(base, "/healthz", context=ssl.create_default_context())


def test_a_503_names_neither_host_port_nor_database(
    fresh_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    away = f"postgresql://rttm@{LOCALHOST}:{port}/secret_dbname"
    with serving(create_app(away)) as base, serving(create_app(fresh_db)) as unmigrated:
        answer = fetch(base, "/api/status")
        assert answer.status == 503
        assert answer.body == '{"detail":"database unavailable"}'
        missing = fetch(unmigrated, "/api/alerts")  # connects; its tables do not exist
    assert missing.status == 503
    assert "does not exist (SQLSTATE 42P01) (run `rttm db migrate`?)" in missing.body
    assert urlsplit(fresh_db).path.strip("/") not in missing.body
    assert str(urlsplit(fresh_db).port) not in missing.body
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{LOCALHOST}:{port}/secret_dbname" in logged  # the operator still learns where


def test_the_files_are_refused_in_one_line_when_weak_or_open(tmp_path: Path) -> None:
    cases = {
        "alice:$apr1$abc$0123456789abcdefghijkl\n": r":1: user 'alice' .* \(Apache MD5\)",
        "# users\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n": r":2: user 'bob' .* \(SHA-1\)",
        "carol:plain-text\n": r":1: user 'carol' has no bcrypt hash \(not a recognised hash\)",
    }
    for text, expected in cases.items():
        with pytest.raises(ConfigError, match=expected):
            read_users(private(tmp_path / "htpasswd", text))
    with pytest.raises(ConfigError, match=":1: token 'x': expected 64 hex digits"):
        read_tokens(private(tmp_path / "tokens", "x:abc\n"))
    open_file = tmp_path / "open"
    open_file.write_text(htpasswd_line("alice", "pw") + "\n")
    open_file.chmod(0o644)
    with pytest.raises(ConfigError, match=r"open to others \(mode 0644\): run chmod 600"):
        read_users(open_file)


def test_loopback_alone_may_go_without_sign_in_and_tokens_alone_offer_no_password() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "localhost"]))
    assert not any(map(is_loopback, [WIDE, "::", "192.168.1.5", "10.0.0.1", "rttm.internal"]))
    only_tokens = Authenticator(tokens={"ci": hashlib.sha256(b"t").digest()})
    assert only_tokens.challenges() == ['Bearer realm="rttm"']
    assert only_tokens.check("Bearer t", "10.0.0.1") == Verdict(200, "token:ci")


def rttm_serve(*args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "rttm", "serve", "--allow-writer-role", *args]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_wide_bind_without_authentication_is_refused_in_one_line() -> None:
    env = {"RTTM_DATABASE_URL": f"postgresql://rttm@{LOCALHOST}:{free_port()}/rttm"}
    refusals = {
        ("--host", WIDE): f"--host {WIDE} would open the dashboard to the network without "
        "authentication: add --auth-file FILE and/or --token-file FILE (or --trust-proxy",
        ("--tls-cert", "cert.pem"): "--tls-key is missing: TLS needs both",
    }
    for args, expected in refusals.items():
        process = rttm_serve(*args, env=env)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 1
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"rttm: error: {expected}"), err


def test_a_wide_bind_with_authentication_and_tls_serves(
    migrated_db: str, auth_files: tuple[Path, Path], tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "tls")
    port = free_port()
    process = rttm_serve(
        "--host",
        WIDE,
        "--port",
        str(port),
        "--trust-proxy",
        "10.9.9.9",
        "--tls-cert",
        str(certs.cert),
        "--tls-key",
        str(certs.key),
        env={"RTTM_DATABASE_URL": migrated_db, "RTTM_SERVE_AUTH_FILE": str(auth_files[0])},
    )
    base, trusting = f"https://{LOCALHOST}:{port}", ssl.create_default_context(cafile=str(certs.ca))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert fetch(base, "/healthz", context=trusting).status == 200
                break
            except OSError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.1)
        spoofed = {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-User": "mallory"}
        assert fetch(base, "/api/status", spoofed, trusting).status == 401
        signed_in = basic("alice", PEOPLE["alice"])
        assert fetch(base, "/api/status", signed_in, trusting).status == 200
        other_host = fetch(base, "/api/status", {**signed_in, "Host": "evil.example"}, trusting)
        assert other_host.status == 400
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert f"dashboard on https://{WIDE}:{port}/" in err
    assert "add --allowed-host NAME" in err
    assert "sign-in required (3 users, 0 tokens, proxy 10.9.9.9/32)" in err


def test_the_api_never_fails_with_a_5xx_signed_in_or_not(
    guarded: str, caplog: pytest.LogCaptureFixture
) -> None:
    signed_in = basic("alice", PEOPLE["alice"])
    schema = schemathesis.openapi.from_url(f"{guarded}/openapi.json", headers=signed_in)
    settings = hypothesis.settings(
        max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    seen: set[int] = set()
    with requests.Session() as session:  # one connection, not one per call
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]

            @settings
            @given(case=operation.as_strategy())
            def no_5xx(case: schemathesis.Case[Any]) -> None:
                for headers in (signed_in, {}):
                    status = case.call(guarded, session, headers, timeout=10).status_code
                    assert status < 500, (case.method, case.formatted_path, status)
                    seen.add(status)

            no_5xx()
    assert {200, 401} <= seen


def test_the_probes_answer_any_host_and_the_rest_only_listed_ones(migrated_db: str) -> None:
    client = TestClient(
        create_app(migrated_db, allowed_hosts=["localhost", "127.0.0.1"]),
        base_url="http://10.1.2.3:8765",
    )  # as the kubelet addresses a pod
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/api/status").status_code == 400
    assert client.get("/").status_code == 400
