"""A metric value of one window: what the engine computes, stores and evaluates rules on."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

#: Labels as sorted (name, value) pairs: hashable, ordered, cheap to compare.
Labels = tuple[tuple[str, str], ...]
#: Longest label value stored (PostgreSQL's btree key limit is about 2.7 kB).
MAX_LABEL_CHARS = 200


def bounded_value(value: str) -> str:
    """``value`` cut to ``MAX_LABEL_CHARS``, ending in a short hash of the whole.

    Free text such as a DLQ reason can be a stack trace of a megabyte, and label values are
    part of an indexed key and of the engine's state; different long values stay different.
    """
    if len(value) <= MAX_LABEL_CHARS:
        return value
    digest = hashlib.sha1(value.encode()).hexdigest()[:8]  # noqa: S324 - a tag, not security
    return f"{value[: MAX_LABEL_CHARS - 10]}…{digest}"


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
