"""Run a simulation through ``rttm_emit``: pacing, progress, and the summary of the run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rttm.core import stopping
from rttm.simulator.engine import Simulation, Tally
from rttm.simulator.scenario import Scenario
from rttm_emit import EmitCounters, Emitter

#: Simulated time may run ahead of the wall clock by this much before the run waits.
PACING_SLACK_S = 0.005


@dataclass
class Summary:
    """What a run produced; the ground truth tests and benchmarks compare the tables with."""

    seed: int
    start: str
    tally: Tally
    emitted: EmitCounters
    seconds: float
    events: int = field(init=False)

    def __post_init__(self) -> None:
        self.events = sum(self.tally.topics.values())

    @property
    def rate(self) -> float:
        """Events handed to the producer per wall-clock second."""
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--summary-json``)."""
        return {
            "seed": self.seed,
            "start": self.start,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.rate, 1),
            "topics": dict(self.tally.topics),
            "faults": dict(self.tally.faults),
            "trades": dict(self.tally.trades),
            "emitted": {
                "sent": self.emitted.sent,
                "failed": self.emitted.failed,
                "dropped": self.emitted.dropped,
            },
        }


def run(
    scenario: Scenario,
    emitter: Emitter,
    *,
    seed: int,
    start: datetime,
    rate: float,
    trades: int | None = None,
    duration: float | None = None,
    paced: bool = True,
    on_progress: Callable[[Simulation, int], None] | None = None,
) -> Summary:
    """Simulate and emit every event; ``paced`` keeps simulated time with the wall clock.

    A stop asked for (``rttm.core.stopping``) ends the run early; what was emitted is flushed.
    """
    simulation = Simulation(
        scenario, seed=seed, start=start, rate=rate, trades=trades, duration=duration
    )
    emit = emitter.emit
    began = time.monotonic()
    for count, (at, event) in enumerate(simulation.events(), start=1):
        if paced:
            ahead = at - (time.monotonic() - began)
            if ahead > PACING_SLACK_S and stopping.wait(ahead):
                break
        if stopping.requested():
            break
        emit(event)
        if on_progress is not None and count % 256 == 0:
            on_progress(simulation, count)
    emitter.close()
    return Summary(
        seed, start.isoformat(), simulation.tally, emitter.counters, time.monotonic() - began
    )
