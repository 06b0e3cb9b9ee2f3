"""TLS to the broker through ``RTTM_KAFKA_CONFIG``, with a certificate authority made here.

Every client (topic creation, producer, the flow's consumers and offset commits) reaches the
broker only through the TLS terminator of ``tests.tls``: the broker advertises the
terminator's port, and its own port is never given to RTTM.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rttm.core.config import KafkaSettings
from rttm.core.registry import TOPICS
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from support import workload
from tests.ingest_helpers import (
    REPO,
    committed_offsets,
    counts,
    flow_env,
    one_line_failure,
    run_flow_process,
)
from tests.tls import Certificates, TlsTerminator, make_certificates

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class TlsBroker:
    terminator: TlsTerminator
    certificates: Certificates
    config_file: Path  # an RTTM_KAFKA_CONFIG file trusting the test authority

    @property
    def settings(self) -> KafkaSettings:
        return KafkaSettings(brokers=self.terminator.bootstrap, extra={})

    @property
    def client_tls(self) -> dict[str, str]:
        """librdkafka settings of a client that trusts the test authority."""
        return {"security.protocol": "SSL", "ssl.ca.location": str(self.certificates.ca)}


def properties(path: Path, ca: Path) -> Path:
    path.write_text(f"# TLS to the test broker\nsecurity.protocol=SSL\nssl.ca.location={ca}\n")
    return path


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    certificates = make_certificates(tmp_path / "pki")
    tls_port = free_port()
    broker = start_broker(tmp_path / "broker", free_port(), advertised_port=tls_port)
    terminator = TlsTerminator(certificates, tls_port, broker.port).start()
    try:
        config = properties(tmp_path / "kafka-tls.properties", certificates.ca)
        yield TlsBroker(terminator, certificates, config)
    finally:
        terminator.stop()
        broker.stop()


def rttm_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rttm", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ingestion_over_tls_stores_every_event(tls_broker: TlsBroker, migrated_db: str) -> None:
    env = flow_env(tls_broker.settings, migrated_db, RTTM_KAFKA_CONFIG=str(tls_broker.config_file))
    created = rttm_cli(env, "topics", "create", "--partitions", "2")
    assert created.returncode == 0, created.stderr
    work = workload.build(5_000, seed=8)
    workload.produce(tls_broker.settings.brokers, work, **tls_broker.client_tls)
    handshakes_before_flow = tls_broker.terminator.handshakes

    result = run_flow_process(env)

    assert result.returncode == 0, result.stderr
    table_counts = counts(migrated_db)
    assert table_counts.pop("rttm_ingest_rejects") == work.malformed
    assert table_counts == {table: work.distinct[table] for table in table_counts}
    assert tls_broker.terminator.handshakes > handshakes_before_flow
    # The offset commits went through too: read back over TLS, each topic's consumer group
    # stands past every message sent to it (offsets count from 0 in each partition, so the
    # committed offsets add up to the messages; the local broker's ListOffsets cannot be
    # trusted for end offsets, docs/design.md §8).
    assert "committing consumer-group offsets failed" not in result.stderr
    sent = Counter(topic for topic, _, _ in work.messages)
    tls = KafkaSettings(brokers=tls_broker.settings.brokers, extra=tls_broker.client_tls)
    for spec in TOPICS:
        # Each shard commits on its own, asynchronously: allow a late one a few seconds.
        deadline = time.monotonic() + 10
        while True:
            offsets = committed_offsets(tls, spec.name, spec.consumer_group)
            if sum(offsets) == sent[spec.name] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert min(offsets) >= 0, (spec.name, offsets)  # -1001: nothing committed
        assert sum(offsets) == sent[spec.name], (spec.name, offsets)


def test_untrusted_certificate_fails_fast_with_the_reason(
    tls_broker: TlsBroker, migrated_db: str, tmp_path: Path
) -> None:
    stranger = make_certificates(tmp_path / "other-pki", authority="some other CA")
    config = properties(tmp_path / "untrusting.properties", stranger.ca)
    started = time.monotonic()
    result = run_flow_process(
        flow_env(tls_broker.settings, migrated_db, RTTM_KAFKA_CONFIG=str(config))
    )
    assert result.returncode == 1, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    # librdkafka words it with or without its "SSL handshake failed: … ca-certificates" frame,
    # depending on which of its threads reports first: the reason is what must be there.
    assert line.startswith(
        f"rttm: error: cannot reach kafka at {tls_broker.settings.brokers} within 5 s: "
    ), line
    assert "error:0A000086:SSL routines::certificate verify failed" in line, line
    assert time.monotonic() - started < 20


def test_plaintext_client_against_the_tls_port_fails_fast(
    tls_broker: TlsBroker, migrated_db: str
) -> None:
    one_line_failure(
        flow_env(tls_broker.settings, migrated_db),
        f"cannot reach kafka at {tls_broker.settings.brokers} within 5 s: Disconnected: "
        "connection closed by peer: receive 0 after POLLIN (is it a TLS or SASL listener? set "
        "security.protocol in RTTM_KAFKA_CONFIG)",
    )
