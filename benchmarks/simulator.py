"""Simulator throughput to the local broker: ``python -m benchmarks.simulator [--trades N]``.

Starts a private broker, runs the default scenario as fast as possible (no pacing) through
``rttm.emit`` until every event is acknowledged, and reports events/s by wall clock and per
CPU-second of this process (the simulator is one Python thread; librdkafka's own threads are
counted too). Writes ``benchmarks/results/simulator.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.emit import Emitter
from rttm.simulator import scenario as scenarios
from rttm.simulator.run import run

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simulator")
    parser.add_argument("--trades", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rttm-sim-bench-") as tmp:
        local = stack.up(Path(tmp), with_postgres=False, kafka_port=0)
        try:
            kafka = KafkaSettings(brokers=local.kafka_brokers, extra={})
            kafka_topics.create_topics(kafka)
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            summary = run(
                scenarios.load(),
                Emitter(kafka),
                seed=1,
                start=datetime.now(UTC),
                rate=2_000.0,
                trades=args.trades,
                paced=False,
            )
            wall = time.perf_counter() - started
            cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            stack.down(Path(tmp), purge=True)  # a temporary stack: its data too
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    result = {
        "trades": args.trades,
        "events": summary.events,
        "delivered": summary.emitted.sent,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "events_per_s": round(summary.events / wall),
        "events_per_cpu_s": round(summary.events / cpu),
    }
    print(
        f"{summary.events:,} events ({summary.emitted.sent:,} acknowledged) in {wall:.1f} s: "
        f"{result['events_per_s']:,} events/s, "
        f"{result['events_per_cpu_s']:,} per CPU-second"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "simulator.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
