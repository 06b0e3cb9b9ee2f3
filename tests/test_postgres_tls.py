"""Every RTTM process against a PostgreSQL that serves TLS, with ``sslmode=verify-full``.

The server is Debian's PostgreSQL (the embedded wheel is built without SSL), its certificate
made in the test by its own authority (``tests/tls.py``); the URL names that authority in
``sslrootcert``. The migration, the ingestion, the metrics flow,
``rttm serve`` and the CLI views all connect through libpq with the URL as given, so one
URL with TLS settings is all a deployment needs; an untrusted server fails in one line.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from rttm.core.addresses import LOCALHOST
from rttm.core.config import KafkaSettings
from rttm.stack.processes import free_port
from rttm.web.app import create_app
from support import workload
from tests.ingest_helpers import counts, create_topics, flow_env, ingest
from tests.metrics_helpers import run_metrics
from tests.servers import rttm_against
from tests.tls import make_certificates

pytestmark = pytest.mark.integration


#: Debian's PostgreSQL (``./dev setup`` installs it): the embedded wheel has no SSL.
DEBIAN_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))


@dataclass
class TlsPostgres:
    """A PostgreSQL serving TLS with a certificate of the test's own authority."""

    port: int
    authority: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{LOCALHOST}:{self.port}/{database}"


def _as_server_user() -> dict[str, Any]:
    """Run as Debian's ``postgres`` user when root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid}


@pytest.fixture
def tls_postgres() -> Iterator[TlsPostgres]:
    """A new cluster in a private folder, TLS on, trust for 127.0.0.1; stopped after."""
    assert DEBIAN_BINARIES, "Debian's PostgreSQL binaries are missing: run ./dev setup"
    binaries = DEBIAN_BINARIES[-1].parent
    run_as = _as_server_user()
    home = Path(tempfile.mkdtemp(prefix="rttm-tls-pg-"))
    home.chmod(0o755)  # the server's user reaches its data through it
    try:
        certificates = make_certificates(home / "certs")
        data = home / "data"
        data.mkdir(mode=0o700)
        if run_as:
            os.chown(data, run_as["user"], run_as["group"])
        subprocess.run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=home,
            **run_as,
        )
        for source, name in ((certificates.cert, "server.crt"), (certificates.key, "server.key")):
            shutil.copyfile(source, data / name)
            if run_as:
                os.chown(data / name, run_as["user"], run_as["group"])
            (data / name).chmod(0o600)
        port = free_port()
        server = subprocess.Popen(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-c",
                f"port={port}",
                "-c",
                f"listen_addresses={LOCALHOST}",
                "-c",
                "unix_socket_directories=",
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=server.crt",
                "-c",
                "ssl_key_file=server.key",
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=home,
            **run_as,
        )
        try:
            found = TlsPostgres(port, certificates.ca)
            _wait_until_up(server, found)
            with psycopg.connect(found.url(), autocommit=True) as admin:
                admin.execute("CREATE DATABASE rttm")
            yield found
        finally:
            server.terminate()
            server.communicate(timeout=30)  # and closes its pipe
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _wait_until_up(server: subprocess.Popen[bytes], found: TlsPostgres) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(found.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if server.poll() is not None:
                pytest.fail(f"postgres exited: {server.stderr.read() if server.stderr else ''!r}")
            assert time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.1)


def verified(url: str, authority: Path) -> str:
    return psycopg.conninfo.make_conninfo(url, sslmode="verify-full", sslrootcert=str(authority))


def test_every_process_works_over_verified_tls(
    tls_postgres: TlsPostgres, kafka: KafkaSettings, tmp_path: Path
) -> None:
    url = verified(tls_postgres.url("rttm"), tls_postgres.authority)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert row.fetchone() == (True,)

    migrated = rttm_against(url, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    create_topics(kafka)
    work = workload.build(3_000, seed=5)
    workload.produce(kafka.brokers, work)
    ingest(kafka, url)
    assert counts(url)["rttm_trade_events"] == work.distinct["rttm_trade_events"]
    metrics = run_metrics(flow_env(kafka, url))
    assert metrics.returncode == 0, metrics.stderr[-2000:]
    client = TestClient(create_app(url))
    assert client.get("/readyz").status_code == 200
    assert client.get("/api/status").json()["as_of"] is not None
    for args in (("status",), ("alerts",), ("db", "status")):
        shown = rttm_against(url, *args)
        assert shown.returncode == 0, (args, shown.stderr)

    # A server whose certificate another authority signed is refused, in one line.
    stranger = make_certificates(tmp_path / "other", authority="another CA").ca
    started = time.monotonic()
    refused = rttm_against(verified(tls_postgres.url("rttm"), stranger), "db", "status")
    assert refused.returncode == 1
    assert time.monotonic() - started < 15
    assert refused.stderr.startswith("rttm: error: ")
    assert "certificate verify failed" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
