"""``rttm simulate``: the platform of a scenario, producing all five topics through rttm_emit."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from rttm.cli import Subcommands, add_command, say
from rttm.core import stopping
from rttm.core.config import KafkaSettings
from rttm.core.errors import RttmError
from rttm.core.live_line import LiveLine
from rttm.core.logs import setup as setup_logging
from rttm.simulator import scenario as scenarios
from rttm.simulator.engine import Simulation
from rttm.simulator.run import Summary, run
from rttm_emit import Emitter

BAR_WIDTH = 24


def register(commands: Subcommands) -> None:
    """Add ``rttm simulate``."""
    sim = add_command(
        commands,
        "simulate",
        help="simulate the trading platform, publishing RTTM events",
        description="Trades move through the scenario's services with per-hop latencies and "
        "injected faults; every event goes to the rttm.* topics through the rttm-emit "
        "producer library.",
    )
    sim.add_argument(
        "--rate", type=float, default=200.0, help="trades created per second (default %(default)s)"
    )
    size = sim.add_mutually_exclusive_group()
    size.add_argument("--trades", type=int, help="trades to create (default 1000)")
    size.add_argument(
        "--duration", type=float, metavar="SECONDS", help="create trades for this many seconds"
    )
    sim.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    sim.add_argument(
        "--start",
        type=datetime.fromisoformat,
        metavar="ISO-TIME",
        help="event time of the first trade (default: now); fix it with --seed "
        "for identical events",
    )
    sim.add_argument(
        "--scenario", type=Path, help="TOML pipeline and faults (default: docs/design.md §5.3)"
    )
    sim.add_argument(
        "--fast",
        action="store_true",
        help="do not pace events to the wall clock: as fast as possible",
    )
    sim.add_argument(
        "--summary-json", type=Path, metavar="FILE", help="also write the summary as JSON"
    )
    sim.set_defaults(run=_simulate)


def _bar(fraction: float) -> str:
    done = int(max(0.0, min(fraction, 1.0)) * BAR_WIDTH)
    return "[" + "#" * done + "." * (BAR_WIDTH - done) + f"] {fraction:4.0%}"


class _Progress:
    """The progress bar's view of the running simulation."""

    def __init__(self, trades: int | None, duration: float | None) -> None:
        self.trades, self.duration = trades, duration
        self.simulation: Simulation | None = None
        self.count = 0
        self.began = time.monotonic()

    def update(self, simulation: Simulation, count: int) -> None:
        self.simulation, self.count = simulation, count

    def render(self) -> str:
        sim = self.simulation
        if sim is None:
            return "simulate: starting"
        done = sim.created / self.trades if self.trades else sim.clock / (self.duration or 1)
        rate = self.count / max(time.monotonic() - self.began, 1e-9)
        return (
            f"simulate: {_bar(done)} | trades {sim.created:,} | events {self.count:,}"
            f" | {rate:,.0f} events/s"
        )


def _simulate(args: argparse.Namespace) -> int:
    setup_logging()
    if args.rate <= 0:
        msg = "--rate must be > 0 trades per second"
        raise RttmError(msg)
    trades = args.trades if args.trades is not None or args.duration is not None else 1_000
    start = args.start or datetime.now(UTC)
    if start.tzinfo is None:
        msg = "--start needs a time zone, e.g. 2026-01-05T09:00:00+00:00"
        raise RttmError(msg)
    scenario = scenarios.load(args.scenario)
    emitter = Emitter(KafkaSettings.from_env())  # the server's: the local stack if unset
    progress = _Progress(trades, args.duration)
    stopping.install()  # Ctrl-C or SIGTERM: stop emitting, flush, report what was sent
    line = LiveLine(progress.render).start()
    try:
        summary = run(
            scenario,
            emitter,
            seed=args.seed,
            start=start,
            rate=args.rate,
            trades=trades,
            duration=args.duration,
            paced=not args.fast,
            on_progress=progress.update,
        )
    finally:
        line.stop()
    _report(summary)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    if summary.emitted.failed or summary.emitted.dropped:
        return 1
    return stopping.status()  # cut short by a signal: 130 or 143


def _report(summary: Summary) -> None:
    say(
        f"simulated {summary.tally.trades['created']:,} trades: {summary.events:,} events in "
        f"{summary.seconds:.1f} s ({summary.rate:,.0f} events/s), seed {summary.seed}"
    )
    for name, count in sorted(summary.tally.topics.items()):
        say(f"  {name:<22} {count:>10,}")
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.tally.trades.items()))
    say(f"  trades: {outcomes}")
    for name, count in sorted(summary.tally.faults.items()):
        say(f"  fault {name:<32} {count:>8,}")
    e = summary.emitted
    say(f"  delivered {e.sent:,}, failed {e.failed:,}, dropped {e.dropped:,}")
