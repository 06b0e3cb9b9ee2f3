"""The trade pipeline the metrics engine follows: stages, their event types, terminal types.

The default (``default_pipeline.toml`` beside this module) is the pipeline of docs/design.md §5.3;
``RTTM_PIPELINE`` names another file of the same shape. Files are decoded strictly: an
unknown key, a missing one, a wrong type or an event type claimed by two stages is an error
naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec

from rttm.core.durations import parse_duration
from rttm.core.toml_files import load_toml

Name = Annotated[str, msgspec.Meta(min_length=1)]
Names = tuple[Name, ...]
DEFAULT_STUCK_AFTER = "30s"
DEFAULT_RETENTION = "3d"


class _Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class StageFile(_Config, frozen=True):
    """A stage as written in the file."""

    name: Name
    service: Name
    success: Annotated[Names, msgspec.Meta(min_length=1)]
    failure: Names = ()
    stuck_after: str | None = None


class TerminalFile(_Config, frozen=True):
    """Event types that end a trade."""

    completed: Annotated[Names, msgspec.Meta(min_length=1)]
    rejected: Names = ()


class QueueFile(_Config, frozen=True):
    """Per-queue overrides."""

    retention: str


class PipelineFile(_Config, frozen=True):
    """The whole file."""

    stages: Annotated[tuple[StageFile, ...], msgspec.Meta(min_length=1)]
    terminal: TerminalFile
    stuck_after: str = DEFAULT_STUCK_AFTER
    retention: str = DEFAULT_RETENTION
    queues: dict[str, QueueFile] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        resolve(self)  # every consistency error surfaces while decoding, with the file


@dataclass(frozen=True)
class Stage:
    """A stage, resolved: its position in the pipeline and its stuck timeout in seconds."""

    index: int
    name: str
    service: str
    stuck_after_s: float


@dataclass(frozen=True)
class Pipeline:
    """Lookup tables built from a pipeline file; what the engine consults per event."""

    stages: tuple[Stage, ...]
    #: event type -> (stage index, is a success of that stage)
    moves: dict[str, tuple[int, bool]]
    completed: frozenset[str]
    rejected: frozenset[str]
    retention_s: float
    queue_retention_s: dict[str, float]

    @cached_property
    def first_events(self) -> frozenset[str]:
        """Event types that start a trade (the first stage's successes)."""
        return frozenset(t for t, (index, ok) in self.moves.items() if index == 0 and ok)

    def retention_of(self, queue: str) -> float:
        """Kafka retention of a business queue, in seconds."""
        return self.queue_retention_s.get(queue, self.retention_s)

    def stage_names(self) -> list[str]:
        """Stage names in pipeline order."""
        return [stage.name for stage in self.stages]


def _seconds(text: str, where: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        msg = f"{where}: {exc}"
        raise ValueError(msg) from None


def resolve(spec: PipelineFile) -> Pipeline:
    """Check a decoded file for consistency and build its lookup tables."""
    default_stuck = _seconds(spec.stuck_after, "stuck_after")
    stages: list[Stage] = []
    moves: dict[str, tuple[int, bool]] = {}
    for index, stage in enumerate(spec.stages):
        where = f"stages[{index}] ({stage.name})"
        stuck = default_stuck
        if stage.stuck_after is not None:
            stuck = _seconds(stage.stuck_after, f"{where}.stuck_after")
        stages.append(Stage(index, stage.name, stage.service, stuck))
        typed = [(t, True) for t in stage.success] + [(t, False) for t in stage.failure]
        for event_type, ok in typed:
            if event_type in moves:
                other = spec.stages[moves[event_type][0]].name
                msg = f"{where}: event type {event_type} already belongs to stage {other}"
                raise ValueError(msg)
            moves[event_type] = (index, ok)
    names = [stage.name for stage in stages]
    if len(set(names)) != len(names):
        msg = f"stage names must be unique, got {', '.join(names)}"
        raise ValueError(msg)
    terminal = set(spec.terminal.completed) | set(spec.terminal.rejected)
    unknown = sorted(terminal - moves.keys())
    if unknown:
        msg = f"terminal: {', '.join(unknown)} belong to no stage"
        raise ValueError(msg)
    return Pipeline(
        stages=tuple(stages),
        moves=moves,
        completed=frozenset(spec.terminal.completed),
        rejected=frozenset(spec.terminal.rejected),
        retention_s=_seconds(spec.retention, "retention"),
        queue_retention_s={
            queue: _seconds(q.retention, f"queues.{queue}.retention")
            for queue, q in spec.queues.items()
        },
    )


def load(path: Path | None = None) -> Pipeline:
    """The pipeline in ``path``, or the default one; errors name the file and the key."""
    default = resources.files(__package__) / "default_pipeline.toml"
    return resolve(load_toml(PipelineFile, path, default, "pipeline"))
