"""Scale-out plans simulated on one machine: ``python -m benchmarks.cluster [--events N]``.

The same seeded workload is ingested to completion, each plan into a fresh database
(rows per table and rejects checked), by: one process with 1 worker; one process with 2 workers; a
two-process Bytewax cluster on 127.0.0.1 (``-i 0/1 -a "127.0.0.1:p0;127.0.0.1:p1"``);
and two independent processes splitting the topics (``RTTM_TOPICS``: trade events alone,
the other four together). Each plan is timed from the first process start to the last
exit. On two cores this shows the cost of each plan's coordination, not the gain of more
machines: see ``docs/scaling.md``. Writes ``results/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.harness import RESULTS, check, fresh_database
from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.registry import TOPICS
from rttm.stack.processes import free_port
from support import workload

FLOW = [sys.executable, "-m", "bytewax.run", "dataflows.rttm"]


@dataclass
class Plan:
    """One way to deploy the ingestion, and how long it took."""

    name: str
    processes: int
    seconds: float = 0.0

    def rate(self, events: int) -> float:
        """Events per second, first start to last exit."""
        return events / self.seconds


def commands(plan: str) -> list[tuple[list[str], dict[str, str]]]:
    """The processes (command, extra environment) of ``plan``."""
    if plan == "1 process, 1 worker":
        return [([*FLOW, "-w", "1"], {})]
    if plan == "1 process, 2 workers":
        return [([*FLOW, "-w", "2"], {})]
    if plan == "2-process cluster":
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(2))
        return [([*FLOW, "-w", "1", "-i", str(i), "-a", addresses], {}) for i in range(2)]
    if plan == "2 processes by topic":
        trades = "rttm.trade.events"
        rest = ",".join(spec.name for spec in TOPICS if spec.name != trades)
        return [
            ([*FLOW, "-w", "1"], {"RTTM_TOPICS": trades}),
            ([*FLOW, "-w", "1"], {"RTTM_TOPICS": rest}),
        ]
    msg = f"unknown plan {plan!r}"
    raise ValueError(msg)


PLANS = ["1 process, 1 worker", "1 process, 2 workers", "2-process cluster", "2 processes by topic"]


def run_plan(plan: str, env: dict[str, str]) -> float:
    """Start every process of ``plan``; seconds until the last one exits."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, env={**env, **extra})  # noqa: S603
        for command, extra in commands(plan)
    ]
    codes = [process.wait() for process in processes]
    if any(codes):
        msg = f"{plan}: exit codes {codes}"
        raise RuntimeError(msg)
    return time.perf_counter() - started


def main() -> None:
    """Run every plan (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    plans = []
    with tempfile.TemporaryDirectory(prefix="rttm-cluster-") as tmp:
        local = stack.up(Path(tmp), kafka_port=0, postgres_port=0)
        try:
            kafka = KafkaSettings(brokers=local.kafka_brokers, extra={})
            kafka_topics.create_topics(kafka)
            work = workload.build(args.events)
            workload.produce(kafka.brokers, work)
            admin = local.postgres.url("postgres") if local.postgres else ""
            for name in PLANS:
                url = fresh_database(admin)
                env = {
                    **os.environ,
                    "RTTM_KAFKA_BROKERS": kafka.brokers,
                    "RTTM_TAIL": "0",
                    "RTTM_DATABASE_URL": url,
                }
                plan = Plan(name, len(commands(name)), run_plan(name, env))
                check(url, work)
                plans.append(plan)
                print(f"{name}: {plan.rate(work.total):,.0f} events/s", file=sys.stderr)
        finally:
            stack.down(Path(tmp), purge=True)  # a temporary stack: its data too
    print(f"\n{'plan':<24} {'processes':>9} {'seconds':>8} {'events/s':>10}")
    for plan in plans:
        print(
            f"{plan.name:<24} {plan.processes:>9} {plan.seconds:>8.1f} "
            f"{plan.rate(work.total):>10,.0f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = {
        "events": work.total,
        "plans": [{**asdict(p), "rate": p.rate(work.total)} for p in plans],
    }
    (RESULTS / "cluster.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
