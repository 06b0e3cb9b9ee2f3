"""The ingestion's own counters as Prometheus sees them."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rttm.core.errors import RttmError
from rttm.core.stream import stats as source_stats
from rttm.ingest import prometheus, stats
from rttm.ops import health, metrics_port
from rttm.stack.processes import free_port


def value(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in:\n{text}"
    return float(found.group(1))


def test_counters_and_lag_are_exposed() -> None:
    registry = CollectorRegistry()
    registry.register(prometheus.IngestCollector())
    before = generate_latest(registry).decode()
    source_stats.record_read("rttm.trade.events", 0, 10, 7)
    stats.record_written(9, 1)
    stats.record_retry()
    after = generate_latest(registry).decode()
    for name, delta in (
        ("rttm_ingest_messages_read_total", 10),
        ("rttm_ingest_rows_written_total", 9),
        ("rttm_ingest_rejects_written_total", 1),
        ("rttm_ingest_sink_retries_total", 1),
    ):
        assert value(after, name) - value(before, name) == delta
    assert 'rttm_ingest_lag_messages{partition="0",topic="rttm.trade.events"} 7.0' in after


def test_metrics_port_serves_the_default_registry_and_the_probes_on_localhost() -> None:
    port = free_port()
    prometheus.register()
    reasons: list[str | None] = [None]
    metrics_port.serve(port, health.Readiness([lambda: reasons[-1]]))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
        assert b"rttm_ingest_rows_written_total" in answer.read()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as answer:
        assert (answer.status, answer.read()) == (200, b"ok\n")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as answer:
        assert (answer.status, answer.read()) == (200, b"ready\n")
    reasons.append("database unavailable: postgres at h:5432/db: refused")
    time.sleep(health.CACHE_S + 0.1)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz")
    assert refused.value.code == 503
    assert refused.value.read() == b"database unavailable: postgres at h:5432/db: refused\n"
    refused.value.close()


def test_a_taken_metrics_port_is_one_line() -> None:
    port = free_port()
    metrics_port.serve(port, health.Readiness([]))
    with pytest.raises(RttmError, match=rf"^cannot serve metrics on 127.0.0.1:{port}: "):
        metrics_port.serve(port, health.Readiness([]))
