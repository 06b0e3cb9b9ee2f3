"""Chaos run: ``python -m benchmarks.chaos [--events N] [--kills 5] [--outages 2]``.

A paced producer sends a seeded workload (``benchmarks.workload``: duplicates and malformed
messages included) while the ingestion follows the topics with a Bytewax recovery store.
Meanwhile, at seeded random moments, the harness kills the flow with SIGKILL and restarts
it, and stops PostgreSQL for 10-30 s and starts it again. In the end it compares the
database with the workload's ground truth: per table, no row missing, none doubled, none
unexpected, and exactly one reject per malformed message. Prints a table and exits 1 on any
difference. ``tests/test_chaos.py`` runs a small one.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from bytewax.recovery import init_db_dir
from confluent_kafka import Producer
from psycopg import sql

from benchmarks import workload
from benchmarks.truth import expected_keys, stored_keys
from rttm import kafka_topics
from rttm.config import KafkaSettings
from rttm.db import prepare
from rttm.registry import REJECTS_TABLE, all_tables
from rttm.stack.broker import start_broker
from rttm.stack.postgres import PostgresProcess, start_postgres
from rttm.stack.processes import free_port

CATCH_UP_S = 180.0


@dataclass
class TableCheck:
    """How one table compares with the ground truth."""

    table: str
    expected: int
    stored: int
    missing: int = 0
    doubled: int = 0
    unexpected: int = 0

    @property
    def ok(self) -> bool:
        """No difference at all."""
        return self.expected == self.stored and not (
            self.missing or self.doubled or self.unexpected
        )


@dataclass
class ChaosReport:
    """What was done to the flow and what the database holds afterwards."""

    messages: int
    kills: int = 0
    outages: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tables: list[TableCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every table matches the ground truth."""
        return bool(self.tables) and all(check.ok for check in self.tables)

    def render(self) -> str:
        """The result as a text table."""
        lines = [
            f"{self.messages:,} messages in {self.seconds:.0f} s; {self.kills} SIGKILLs; "
            f"{len(self.outages)} PostgreSQL outages "
            f"({', '.join(f'{s:.0f} s' for s in self.outages) or 'none'})",
            f"{'table':<22} {'expected':>9} {'stored':>9} {'missing':>8} {'doubled':>8} "
            f"{'unexpected':>10}",
        ]
        lines += [
            f"{c.table:<22} {c.expected:>9,} {c.stored:>9,} {c.missing:>8} {c.doubled:>8} "
            f"{c.unexpected:>10}"
            for c in self.tables
        ]
        lines.append("result: " + ("exact" if self.ok else "DIFFERENCES"))
        return "\n".join(lines)


class _Flow:
    """The ingestion as a subprocess that can be killed and restarted."""

    def __init__(self, env: dict[str, str], recovery: Path, log: Path) -> None:
        self._env, self._recovery, self._log = env, recovery, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "bytewax.run", "dataflows.rttm",
                 "-r", str(self._recovery), "-s", "1", "-b", "0"],
                env=self._env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _table_counts(url: str) -> Counter[str]:
    """Rows per table, counted by PostgreSQL (polled while the flow catches up)."""
    counts: Counter[str] = Counter()
    with psycopg.connect(url) as conn:
        for table in all_tables():
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def run(
    events: int, kills: int, outages: int, seed: int, rate: float, outage_s: tuple[float, float]
) -> ChaosReport:
    """One chaos run on a private broker and PostgreSQL; see the module docstring."""
    rng = random.Random(seed)
    work = workload.build(events, seed=seed)
    truth = expected_keys(work)
    want = Counter({table: len(keys) for table, keys in truth.items()})
    want[REJECTS_TABLE] = work.malformed
    report = ChaosReport(work.total)
    with tempfile.TemporaryDirectory(prefix="rttm-chaos-") as tmp_dir:
        tmp = Path(tmp_dir)
        broker = start_broker(tmp / "broker", free_port())
        port = free_port()
        servers: list[PostgresProcess] = [start_postgres(tmp / "pg", port)]
        flow: _Flow | None = None
        try:
            kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
            kafka_topics.create_topics(kafka)
            url = servers[0].url()
            with psycopg.connect(url, autocommit=True) as conn:
                prepare(conn)
            recovery = tmp / "recovery"
            recovery.mkdir()
            init_db_dir(recovery, 1)
            env = {**os.environ, "RTTM_KAFKA_BROKERS": kafka.brokers, "RTTM_DATABASE_URL": url,
                   "RTTM_TAIL": "1"}  # fmt: skip
            flow = _Flow(env, recovery, tmp / "flow.log")
            started = time.monotonic()
            flow.start()
            producer = threading.Thread(
                target=_produce, args=(kafka.brokers, work, rate), daemon=True
            )
            producer.start()
            plan = ["kill"] * kills + ["outage"] * outages
            rng.shuffle(plan)
            window = work.total / rate
            ready = started  # each action waits until the flow has run a while again
            for n, action in enumerate(plan):
                planned = started + window * (n + rng.uniform(0.3, 0.9)) / len(plan)
                _sleep_until(max(planned, ready + rng.uniform(1.5, 3.0)))
                if action == "kill":
                    flow.kill()
                    report.kills += 1
                    flow.start()
                else:
                    down = rng.uniform(*outage_s)
                    servers[-1].stop()
                    time.sleep(down)
                    servers.append(start_postgres(tmp / "pg", port))
                    report.outages.append(down)
                print(f"chaos: {action} at {time.monotonic() - started:.1f} s", file=sys.stderr)
                ready = time.monotonic()
            producer.join()
            deadline = time.monotonic() + CATCH_UP_S
            while _table_counts(url) != want and time.monotonic() < deadline:
                if not flow.alive():
                    msg = f"the flow exited; its log: {(tmp / 'flow.log').read_text()[-2000:]}"
                    raise RuntimeError(msg)
                time.sleep(0.5)
            report.seconds = time.monotonic() - started
            flow.kill()
            report.tables = _compare(url, truth, work.malformed)
        finally:
            if flow is not None and flow.alive():
                flow.kill()
            servers[-1].stop()
            broker.stop()
    return report


def _produce(brokers: str, work: workload.Workload, rate: float) -> None:
    """Send ``work`` at ``rate`` messages per second, in order."""
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})
    started = time.monotonic()
    for n, (topic, key, value) in enumerate(work.messages):
        if n % 200 == 0:
            _sleep_until(started + n / rate)
        workload.send(producer, topic, key, value)
        producer.poll(0)
    if producer.flush(60):
        msg = "the producer could not deliver every message"
        raise RuntimeError(msg)


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _compare(url: str, truth: dict[str, set[str]], malformed: int) -> list[TableCheck]:
    stored = stored_keys(url)
    checks = []
    for table, keys in stored.items():
        expected = truth.get(table, set())
        distinct = set(keys)
        checks.append(TableCheck(
            table, len(expected), len(keys), missing=len(expected - distinct),
            doubled=len(keys) - len(distinct), unexpected=len(distinct - expected),
        ))  # fmt: skip
    rejects = _table_counts(url)[REJECTS_TABLE]
    checks.append(TableCheck(REJECTS_TABLE, malformed, rejects,
                             missing=max(malformed - rejects, 0),
                             unexpected=max(rejects - malformed, 0)))  # fmt: skip
    return checks


def main() -> None:
    """Run it (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=4_000, help="messages/s produced")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--outages", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    report = run(args.events, args.kills, args.outages, args.seed, args.rate, (10.0, 30.0))
    print(report.render())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
