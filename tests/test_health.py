"""``/healthz`` and ``/readyz`` on every long-running process, against real servers.

The readiness logic is checked on its own first; then the ingestion, the metrics flow and
the dashboard run as the operator runs them, and their database goes away and comes back.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rttm.core.config import KafkaSettings
from rttm.core.stream.stats import SourceCounters
from rttm.ops import health
from rttm.stack.broker import BrokerProcess
from rttm.stack.postgres import PostgresProcess, start_postgres
from rttm.stack.processes import free_port
from support import workload
from tests.conftest import TEST_POSTGRES_SETTINGS
from tests.ingest_helpers import create_topics, flow_env, migrated
from tests.processes import RTTM, not_ready, probe, ready, start, stop, wait_for

# -- the readiness rules ----------------------------------------------------------------


def test_a_flow_is_ready_once_it_polls_and_while_it_reads_or_has_nothing_to_read() -> None:
    counters = SourceCounters()
    check = health.flow_progress(counters, stall_s=60)
    assert check() == "starting: the flow has not begun reading"
    now = time.monotonic()
    counters.polled = {1: now, 2: now}
    assert check() is None  # polling, nothing behind: caught up
    counters.lag = {("rttm.trade.events", 0): 500}
    counters.started = counters.read_at = now - 30
    assert check() is None  # behind, but read 30 s ago: making progress
    counters.read_at = now - 61
    assert check() == "stalled: 500 messages to read and none read for 61 s"
    counters.polled[2] = now - 75  # one worker blocked, the other polling
    assert check() == "stalled: a worker has not polled its source for 75 s"


def test_readiness_gives_the_first_failing_reason_and_reuses_an_answer_for_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(health, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    asked: list[str] = []

    def check(name: str, answer: str | None) -> health.Check:
        def ask() -> str | None:
            asked.append(name)
            return answer

        return ask

    ready = health.Readiness(
        [check("db", None), check("broker", "broker unavailable: x"), check("flow", "starting")]
    )
    assert ready.reason() == "broker unavailable: x"
    assert asked == ["db", "broker"]
    clock[0] += health.CACHE_S
    assert ready.reason() == "broker unavailable: x"
    assert asked == ["db", "broker"]  # reused
    clock[0] += 0.01
    ready.reason()
    assert asked == ["db", "broker", "db", "broker"]


def test_a_probe_arriving_while_a_check_runs_gets_the_last_answer_at_once() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow() -> str | None:
        entered.set()
        release.wait(10)
        return "database unavailable: slow"

    ready = health.Readiness([slow])
    first = threading.Thread(target=ready.reason)
    first.start()
    assert entered.wait(10)
    began = time.monotonic()
    assert ready.reason() == "starting: readiness not checked yet"  # no answer yet
    assert time.monotonic() - began < 1
    release.set()
    first.join(10)
    assert ready.reason() == "database unavailable: slow"


def test_the_database_check_names_the_server_and_the_cause_without_the_password() -> None:
    port = free_port()
    url = f"postgresql://rttm:S3cr3t@127.0.0.1:{port}/rttm"
    reason = health.database(url)()
    assert reason is not None
    assert reason.startswith(f"database unavailable: postgres at 127.0.0.1:{port}/rttm: ")
    assert "refused" in reason
    assert "S3cr3t" not in reason


def test_the_broker_check_answers_while_the_broker_does_and_says_why_when_not(
    kafka: KafkaSettings,
) -> None:
    assert health.broker(kafka)() is None
    port = free_port()
    reason = health.broker(KafkaSettings(brokers=f"127.0.0.1:{port}", extra={}))()
    assert reason is not None
    assert reason.startswith(f"broker unavailable: kafka at 127.0.0.1:{port}: ")


# -- every process, its database away and back --------------------------------------------


@pytest.mark.integration
def test_every_process_answers_its_probes_and_is_not_ready_while_its_database_is_away(
    kafka: KafkaSettings,
    broker: BrokerProcess,
    own_postgres: tuple[Path, int, list[PostgresProcess]],
) -> None:
    state, port, servers = own_postgres
    url = migrated(servers[0].url())
    create_topics(kafka)
    workload.produce(kafka.brokers, workload.build(3_000, seed=4))
    env = flow_env(kafka, url, RTTM_TAIL="1")
    ports = {name: free_port() for name in ("ingest", "metrics", "serve")}
    processes = {
        "ingest": start([*RTTM, "ingest", "--metrics-port", str(ports["ingest"])], env),
        "metrics": start([*RTTM, "metrics", "--metrics-port", str(ports["metrics"])], env),
        "serve": start([*RTTM, "serve", "--port", str(ports["serve"]), "--allow-writer-role"], env),
    }
    try:
        for name, where in ports.items():
            wait_for(ready(where))
            assert probe(where, "/healthz") == (200, "ok\n"), name
        servers[0].stop()
        for name, where in ports.items():
            wait_for(not_ready(where))
            _, reason = probe(where, "/readyz")
            if name == "serve":  # a port that may face more people: what failed, not where
                assert reason == "database unavailable\n"
            else:
                assert reason.startswith(f"database unavailable: postgres at 127.0.0.1:{port}/")
                assert len(reason.strip().splitlines()) == 1, reason
            assert probe(where, "/healthz") == (200, "ok\n"), name  # alive all the same
        servers.append(start_postgres(state, port, TEST_POSTGRES_SETTINGS))
        for where in ports.values():
            wait_for(ready(where))
        broker.stop()
        for name in ("ingest", "metrics"):
            wait_for(not_ready(ports[name]))
            _, reason = probe(ports[name], "/readyz")
            assert reason.startswith(f"broker unavailable: kafka at {kafka.brokers}: "), reason
        assert probe(ports["serve"], "/readyz") == (200, "ready\n")  # it reads no topic
    finally:
        logged = {}
        for name, process in processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            logged[name] = process.communicate(timeout=30)[1]
    # The dashboard logs the whole reason, once per change.
    assert (
        logged["serve"].count(f"not ready: database unavailable: postgres at 127.0.0.1:{port}/")
        == 1
    )
    assert logged["serve"].count("ready again") == 1


@pytest.mark.integration
def test_a_cluster_process_waiting_for_its_peer_is_alive_not_ready_and_stops_on_sigterm(
    kafka: KafkaSettings, migrated_db: str
) -> None:
    create_topics(kafka)
    metrics_port, own, peer = free_port(), free_port(), free_port()
    addresses = f"127.0.0.1:{own};127.0.0.1:{peer}"
    process = start(
        [
            *RTTM,
            "ingest",
            "-i",
            "0",
            "-a",
            addresses,
            "--peer-timeout",
            "60",
            "--metrics-port",
            str(metrics_port),
        ],
        flow_env(kafka, migrated_db, RTTM_TAIL="1"),
    )
    wait_for(lambda: probe(metrics_port, "/healthz") == (200, "ok\n"))
    assert probe(metrics_port, "/readyz") == (503, "starting: the flow has not begun reading\n")
    status, lines = stop(process, signal.SIGTERM)
    assert status == 0, lines
    assert lines[-1] == (
        f"rttm: stopped on SIGTERM before the cluster formed (process 0 "
        f"(127.0.0.1:{own}) waited for 127.0.0.1:{peer})"
    )
