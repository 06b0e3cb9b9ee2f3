"""Freshness under steady load: time from ``produce()`` to the row being visible in PostgreSQL.

RTTM follows the topics (``RTTM_TAIL=1``) while a paced producer sends the workload at a
steady rate. Every ``PROBE_EVERY_S`` one of the messages is a probe — a trade event with a
unique trade id — whose produce time is noted; a watcher polls PostgreSQL every
``POLL_S`` for the probes not seen yet (through the trade-id index) and notes when each
becomes visible, so a reading is exact to the poll interval. Probes travel with the load,
through the same producer, topic and flow, so they see what every other event sees.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from benchmarks import cpu
from rttm.core.registry import BY_NAME
from support import workload

PROBE_EVERY_S = 0.02
POLL_S = 0.005
#: librdkafka settings of ``rttm.emit.Emitter`` (its default linger is part of freshness).
PRODUCER = {
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "enable.idempotence": True,
    "queue.buffering.max.messages": 500_000,
}
_TRADES = BY_NAME["rttm.trade.events"]


@dataclass
class Freshness:
    """Result of one steady-load run."""

    rate: float  # events per second asked for
    achieved: float  # events per second actually produced
    seconds: float
    probes: int
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    unseen: int = 0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the probe latencies, in ms."""
        cuts = statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")
        return cuts[min(int(q * 10) - 1, len(cuts) - 1)]


def _probe(n: int) -> tuple[str, bytes, bytes]:
    trade = f"PROBE-{n:08d}"
    body = {
        "trade_id": trade,
        "service_name": "freshness-probe",
        "event_type": "PROBE",
        "event_status": "SUCCESS",
        "event_id": f"probe-{n}",
        "event_time": datetime.now(UTC).isoformat(),
    }
    return _TRADES.name, trade.encode(), json.dumps(body).encode()


class _Watcher(threading.Thread):
    """Polls for sent probes until each is visible; records the latency of each."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._poll()
        except BaseException as exc:  # re-raised by the producing thread
            self.error = exc

    def _poll(self) -> None:
        query = f"SELECT trade_id FROM {_TRADES.table} WHERE trade_id = ANY(%s)"  # noqa: S608
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                with self.lock:
                    pending = [t for t in self.sent if t not in self.seen]
                if pending:
                    found = conn.execute(query, (pending,)).fetchall()
                    now = time.perf_counter()
                    with self.lock:
                        for (trade,) in found:
                            self.seen[trade] = now - self.sent[trade]
                time.sleep(POLL_S)

    def send(self, trade: str) -> None:
        with self.lock:
            self.sent[trade] = time.perf_counter()

    def reset(self) -> None:
        with self.lock:
            self.sent.clear()
            self.seen.clear()

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            with self.lock:
                if len(self.seen) == len(self.sent):
                    return
            time.sleep(0.05)


def measure(brokers: str, url: str, rate: int, seconds: float, log: Path) -> Freshness:
    """Run RTTM (1 worker) following the topics while producing ``rate`` events/s.

    The flow's output goes to ``log`` (stopping it with SIGINT prints a traceback).
    """
    work = workload.build(int(rate * seconds))
    env = {**os.environ, "RTTM_KAFKA_BROKERS": brokers, "RTTM_DATABASE_URL": url, "RTTM_TAIL": "1"}
    with log.open("wb") as out:
        flow = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.rttm", "-w", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    producer = Producer({"bootstrap.servers": brokers, **PRODUCER})
    watcher = _Watcher(url)
    watcher.start()
    probes = 0

    def send(topic: str, key: bytes, value: bytes) -> None:
        workload.send(producer, topic, key, value, wait=0.001)

    try:
        # Warm up: the flow is ready once a first probe comes through.
        topic, key, value = _probe(probes)
        watcher.send(key.decode())
        send(topic, key, value)
        producer.flush(10)
        watcher.wait_all(60)
        if len(watcher.seen) != 1:
            msg = f"the flow did not ingest a first event within 60 s; its output: {log}"
            raise RuntimeError(msg)
        watcher.reset()
        started = time.perf_counter()
        sent, next_probe = 0, started
        while sent < work.total:
            now = time.perf_counter()
            due = min(int((now - started) * rate), work.total)
            for topic, key, value in work.messages[sent:due]:
                send(topic, key, value)
            sent = due
            if now >= next_probe:
                probes += 1
                topic, key, value = _probe(probes)
                watcher.send(key.decode())
                send(topic, key, value)
                next_probe += PROBE_EVERY_S
            producer.poll(0)
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        producer.flush(30)
        watcher.wait_all(30)
        if flow.poll() is not None:
            msg = f"the flow exited during the load (code {flow.returncode}); its output: {log}"
            raise RuntimeError(msg)
        peak = cpu.peak_rss_mb(flow.pid) or 0.0
    finally:
        watcher.stop.set()
        flow.send_signal(signal.SIGINT)
        try:
            flow.wait(30)
        except subprocess.TimeoutExpired:
            flow.kill()
    with watcher.lock:
        latencies = [v * 1000 for v in watcher.seen.values()]
        unseen = len(watcher.sent) - len(watcher.seen)
    if unseen:  # their latency is unknown: a percentile without them would flatter
        msg = f"{unseen} of {len(watcher.sent)} probes not visible 30 s after the load"
        raise RuntimeError(msg)
    return Freshness(
        rate, (work.total + probes) / elapsed, elapsed, probes, latencies, peak, unseen
    )
