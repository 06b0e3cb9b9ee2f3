"""Metrics converge with late producers: ``python -m benchmarks.convergence [--minutes 60]``.

On a new local stack: the simulator's default platform (faults included) at the benchmark
rate (300 trades/s, about 1,800 events/s) for ``--minutes`` of event time, published as
late producers would publish it:

- every ``--burst-every`` minutes one service publishes a stretch of ``--burst`` seconds of
  its events ``--delay`` seconds late (a broker hiccup, a paused JVM), in turn;
- ``--repeats`` of all events are delivered a second time a few seconds later (a retry);
- after the run, a few trades more than the correction horizon later move event time on,
  so every window of the run settles.

Both flows read everything (``RTTM_TAIL=0``) with the default correction horizon (1 h).
Reports the metrics flow's peak RSS and time, the late, corrected and repeated events it
counted, and ``rttm metrics verify`` over the whole run. Exits 1 on any difference.
Writes ``results/convergence.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import msgspec
import psycopg

from benchmarks.harness import RESULTS, TRADES_PER_S, fresh_database, timed
from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.contracts import Message, TradeEvent
from rttm.core.durations import parse_duration
from rttm.metrics.settings import DEFAULT_CORRECTION
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from rttm.views import verify
from support import simulated
from support.kafka import produce

SERVICES = ("trade-capture-service", "validation-service", "pms-core", "analytics-service")


@dataclass
class Result:
    """One run: what was published, what the flows did, what verify found."""

    minutes: float
    events: int
    delayed: int
    repeated_sent: int
    ingest_seconds: float
    metrics_seconds: float
    metrics_peak_rss_mb: float
    late_events: float
    corrected_events: float
    repeated_events: float
    windows_verified: int
    verify_seconds: float
    points_compared: int
    left_out: int
    differences: int


def published(
    run: list[Message], args: argparse.Namespace, rng: random.Random
) -> tuple[list[Message], int, int]:
    """``run`` in the order late producers publish it; (order, delayed, repeats sent)."""
    start = simulated.T0.timestamp()
    keyed: list[tuple[float, int, Message]] = []
    delayed = 0
    for n, event in enumerate(run):
        moment = _time(event)
        at = moment
        offset = moment - start
        burst = int(offset // (args.burst_every * 60))
        if (
            offset % (args.burst_every * 60) < args.burst
            and getattr(event, "service_name", None) == SERVICES[burst % len(SERVICES)]
        ):
            at += args.delay
            delayed += 1
        keyed.append((at, n, event))
        if rng.random() < args.repeats:
            keyed.append((at + rng.uniform(0.5, 5.0), n, event))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in keyed], delayed, len(keyed) - len(run)


def _time(event: Message) -> float:
    moment = getattr(event, "event_time", None) or getattr(event, "snapshot_time", None)
    assert moment is not None
    return float(moment.timestamp())


def settle(run: list[Message], after_s: float) -> list[Message]:
    """A few trades ``after_s`` past the run's end: event time moves on, windows settle."""
    last = max(_time(event) for event in run)
    moment = simulated.T0 + timedelta(seconds=last - simulated.T0.timestamp() + after_s)
    trades = [event for event in run if isinstance(event, TradeEvent)][:20]
    return [
        msgspec.structs.replace(event, event_id=None, trade_id=f"settle-{n}", event_time=moment)
        for n, event in enumerate(trades)
    ]


def totals(url: str) -> dict[str, float]:
    """The run's total late, corrected and repeated events, as the metrics counted them."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT metric, sum(value) FROM rttm_metrics WHERE metric IN"
            " ('late_events', 'corrected_events', 'repeated_events') GROUP BY metric"
        ).fetchall()
    return {metric: float(value) for metric, value in rows}


def main() -> None:
    """Run it (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.convergence")
    parser.add_argument("--minutes", type=float, default=60.0, help="event time to simulate")
    parser.add_argument("--burst-every", type=float, default=10.0, metavar="MINUTES")
    parser.add_argument("--burst", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--delay", type=float, default=45.0, metavar="SECONDS")
    parser.add_argument("--repeats", type=float, default=0.005, metavar="SHARE")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    horizon = parse_duration(DEFAULT_CORRECTION)
    run = simulated.events(args.minutes * 60, rate=TRADES_PER_S, seed=args.seed)
    order, delayed, repeats = published(run, args, rng)
    order += settle(run, horizon + 600)
    _say(f"{len(run):,} events, {delayed:,} published {args.delay:g} s late, {repeats:,} twice")
    with tempfile.TemporaryDirectory(prefix="rttm-convergence-") as tmp:
        local = stack.up(Path(tmp), kafka_port=0, postgres_port=0)
        broker = start_broker(Path(tmp) / "broker", free_port())
        try:
            admin = local.postgres.url("postgres") if local.postgres else ""
            kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
            kafka_topics.create_topics(kafka)
            started = time.perf_counter()
            produce(kafka.brokers, simulated.kafka_messages(order))
            _say(f"produced in {time.perf_counter() - started:.0f} s")
            url = fresh_database(admin)
            env = {
                **os.environ,
                "RTTM_KAFKA_BROKERS": kafka.brokers,
                "RTTM_DATABASE_URL": url,
                "RTTM_TAIL": "0",
            }
            ingest_s, _, _ = timed([sys.executable, "-m", "bytewax.run", "dataflows.rttm"], env)
            _say(f"ingested in {ingest_s:.0f} s")
            metrics_s, rss, _ = timed(
                [sys.executable, "-m", "bytewax.run", "dataflows.metrics"], env
            )
            _say(f"metrics in {metrics_s:.0f} s, peak {rss:.0f} MB")
            counted = totals(url)
            started = time.perf_counter()
            report = verify.run(env, since_s=args.minutes * 60 + horizon + 3600)
            verify_s = time.perf_counter() - started
            _say(f"verified in {verify_s:.1f} s")
        finally:
            broker.stop()
            stack.down(Path(tmp), purge=True)
    result = Result(
        args.minutes,
        len(run),
        delayed,
        repeats,
        ingest_s,
        metrics_s,
        rss,
        counted.get("late_events", 0.0),
        counted.get("corrected_events", 0.0),
        counted.get("repeated_events", 0.0),
        report.span.windows if report.span else 0,
        verify_s,
        report.compared,
        sum(report.left_out.values()),
        len(report.differences),
    )
    for found in report.differences[:20]:
        print(
            f"difference: {found.metric} {dict(found.labels)} at"
            f" {verify.iso_of(found.window_start)}: stored {found.stored},"
            f" recounted {found.recounted}"
        )
    print(json.dumps(asdict(result), indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "convergence.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    sys.exit(0 if report.ok and report.compared else 1)


def _say(text: str) -> None:
    print(f"convergence: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
