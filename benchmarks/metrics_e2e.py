"""Metrics flow end to end: ``python -m benchmarks.metrics_e2e [--minutes 5,20,40]``.

For each size, on a new broker: the simulator's default platform (faults included, 300
trades/s, about 1,800 events/s of simulated time) is produced in full, then
``python -m bytewax.run dataflows.metrics`` reads it to the end into a fresh durable
database. Reports events/s (wall clock, start-up included) and the flow's peak RSS; the
largest run holds 8x the history of the smallest, so a flat RSS shows state bounded by
the trades in flight, not by how much has been seen. Checks that the stored event counts
add up to the trade events produced. Writes ``results/metrics_e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.harness import RESULTS, TRADES_PER_S, counted_events, fresh_database, timed
from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.contracts import TradeEvent
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from support import simulated
from support.kafka import produce

TARGET = 50_000  # events/s on one process (issue 7)


@dataclass
class Run:
    """One metrics run to completion."""

    minutes: float
    events: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    points: int

    @property
    def rate(self) -> float:
        """Events per wall-clock second."""
        return self.events / self.seconds


def main() -> None:
    """Run every size (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_e2e")
    parser.add_argument("--minutes", default="5,20,40", help="simulated minutes per run")
    args = parser.parse_args()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="rttm-metrics-") as tmp:
        local = stack.up(Path(tmp), kafka_port=0, postgres_port=0)
        try:
            admin = local.postgres.url("postgres") if local.postgres else ""
            for minutes in (float(m) for m in args.minutes.split(",")):
                runs.append(one_run(Path(tmp), admin, minutes))
                r = runs[-1]
                print(
                    f"{minutes:g} min: {r.events:,} events in {r.seconds:.1f} s = "
                    f"{r.rate:,.0f} events/s, peak {r.peak_rss_mb:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            stack.down(Path(tmp), purge=True)  # a temporary stack: its data too
    report(runs)


def one_run(tmp: Path, admin: str, minutes: float) -> Run:
    """Produce ``minutes`` of simulated traffic to a new broker, time the metrics flow."""
    broker = start_broker(tmp / f"broker-{minutes:g}", free_port())
    try:
        kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
        kafka_topics.create_topics(kafka)
        run = simulated.events(minutes * 60, rate=TRADES_PER_S, seed=1)
        started = time.perf_counter()
        produce(kafka.brokers, simulated.kafka_messages(run))
        print(
            f"{minutes:g} min: produced {len(run):,} events in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        url = fresh_database(admin)
        env = {
            **os.environ,
            "RTTM_KAFKA_BROKERS": kafka.brokers,
            "RTTM_DATABASE_URL": url,
            "RTTM_TAIL": "0",
        }
        seconds, rss, cpu_seconds = timed(
            [sys.executable, "-m", "bytewax.run", "dataflows.metrics"], env
        )
        trades, points = counted_events(url)
        expected = sum(1 for event in run if isinstance(event, TradeEvent))
        if trades != expected:
            msg = f"windows count {trades:,} trade events, {expected:,} were produced"
            raise RuntimeError(msg)
        return Run(minutes, len(run), seconds, rss, cpu_seconds, points)
    finally:
        broker.stop()


def report(runs: list[Run]) -> None:
    """Print the table and write JSON."""
    print(
        f"\n{'minutes':>8} {'events':>10} {'seconds':>8} {'events/s':>10} {'vs 50k':>7} "
        f"{'µs CPU/event':>13} {'peak MB':>8} {'points':>8}"
    )
    for r in runs:
        print(
            f"{r.minutes:>8g} {r.events:>10,} {r.seconds:>8.1f} {r.rate:>10,.0f} "
            f"{r.rate / TARGET:>6.1f}x {1e6 * r.cpu_seconds / r.events:>13.2f} "
            f"{r.peak_rss_mb:>8.0f} {r.points:>8,}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = [{**asdict(r), "rate": r.rate} for r in runs]
    (RESULTS / "metrics_e2e.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'metrics_e2e.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
