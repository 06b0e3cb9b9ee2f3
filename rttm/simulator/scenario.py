"""A simulated platform: its pipeline of stages and the faults to inject (TOML).

The default (``default.toml`` beside this module) is the pipeline of docs/design.md §5.3.
Files are decoded strictly: an unknown key, a missing one or a wrong type is an error naming
where.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec

from rttm.core.toml_files import load_toml

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Millis = Annotated[float, msgspec.Meta(ge=0.0)]
Name = Annotated[str, msgspec.Meta(min_length=1)]
_Z99 = 2.326  # 99th percentile of the standard normal


class _Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Latency(_Config, frozen=True):
    """Log-normal latency of one hop."""

    median_ms: Millis
    p99_ms: Millis

    @property
    def mu_sigma(self) -> tuple[float, float]:
        """Parameters of ``random.lognormvariate`` (in seconds)."""
        median = max(self.median_ms, 0.001) / 1000
        spread = max(self.p99_ms / 1000, median) / median
        return math.log(median), math.log(spread) / _Z99


class Failure(_Config, frozen=True):
    """A terminal failure at a stage (the trade is rejected), optionally to a DLQ."""

    rate: Rate
    event_type: Name
    message: Name
    dlq_topic: Name | None = None
    dlq_reason: Name | None = None


class Retry(_Config, frozen=True):
    """A transient error at a stage: error event and failure event, then a retry."""

    rate: Rate
    event_type: Name
    error_type: Name
    error_message: Name
    backoff_ms: Millis = 200.0


class Slow(_Config, frozen=True):
    """A slow hop at a stage, reported by a log event."""

    rate: Rate
    extra_ms: Millis
    log_level: Name
    log_category: Name
    message: Name


class Stage(_Config, frozen=True):
    """One service a trade passes through."""

    name: Name
    service: Name
    success: Name
    latency: Latency
    source_queue: Name | None = None
    target_queue: Name | None = None
    failure: Failure | None = None
    retry: Retry | None = None
    slow: Slow | None = None


class Stuck(_Config, frozen=True):
    """Trades that stop after ``after_stage``."""

    rate: Rate
    after_stage: Name


class Lag(_Config, frozen=True):
    """The consumer of ``queue`` falls behind by ``growth_per_s`` messages every second."""

    queue: Name
    growth_per_s: Annotated[float, msgspec.Meta(ge=0.0)]


class Scenario(_Config, frozen=True):
    """A whole simulated platform."""

    stages: Annotated[tuple[Stage, ...], msgspec.Meta(min_length=1)]
    queue_partitions: Annotated[int, msgspec.Meta(ge=1)] = 6
    metrics_interval_s: Annotated[float, msgspec.Meta(gt=0.0)] = 5.0
    stuck: Stuck | None = None
    lag: tuple[Lag, ...] = ()

    def __post_init__(self) -> None:
        names = [stage.name for stage in self.stages]
        if self.stuck is not None and self.stuck.after_stage not in names:
            msg = (
                f"stuck.after_stage {self.stuck.after_stage!r} is not a stage ({', '.join(names)})"
            )
            raise ValueError(msg)
        queues = {s.source_queue for s in self.stages} | {s.target_queue for s in self.stages}
        for lag in self.lag:
            if lag.queue not in queues:
                msg = f"lag.queue {lag.queue!r} is not a queue of the pipeline"
                raise ValueError(msg)

    @property
    def queues(self) -> list[tuple[str, str]]:
        """(consuming service, queue) pairs: what queue metrics are reported for."""
        return [(s.service, s.source_queue) for s in self.stages if s.source_queue]


def load(path: Path | None = None) -> Scenario:
    """The scenario in ``path``, or the default one; errors name the file and the key."""
    return load_toml(Scenario, path, resources.files(__package__) / "default.toml", "scenario")
