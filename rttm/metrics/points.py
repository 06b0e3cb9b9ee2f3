"""A metric value of one window: what the engine computes, stores and evaluates rules on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

#: Labels as sorted (name, value) pairs: hashable, ordered, cheap to compare.
Labels = tuple[tuple[str, str], ...]


def labels_of(mapping: Mapping[str, object]) -> Labels:
    """Canonical labels from a mapping (values as strings, sorted by name)."""
    return tuple(sorted((name, str(value)) for name, value in mapping.items()))


@dataclass(frozen=True, slots=True)
class Point:
    """``metric{labels}`` = ``value`` over the window [``window_start``, ``window_end``)."""

    metric: str
    labels: Labels
    window_start: datetime
    window_end: datetime
    value: float

    def label(self, name: str) -> str | None:
        """The value of label ``name``, if the point has it."""
        for key, value in self.labels:
            if key == name:
                return value
        return None
