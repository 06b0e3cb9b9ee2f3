"""Mergeable latency sketch: log-spaced buckets, quantiles within 1 % of the true value.

Each shard of the flow sketches the latencies it sees; the window's sketches from all
shards are merged by adding bucket counts, which percentiles of raw samples cannot do. The
size depends on the spread of the values (about 230 buckets per factor of 100), not on
their number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: Relative accuracy: a quantile is reported within ``ACCURACY`` of a true sample value.
ACCURACY = 0.01
_GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
#: Values at or below this (ms) share one bucket reported as 0.
_TINY = 1e-3
_ZERO = -(2**31)


class Sketch:
    """Counts of values per log bucket; ``add``, ``merge``, ``quantile``."""

    __slots__ = ("buckets", "count")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    def add(self, value: float) -> None:
        """Record one value (negative values count as 0)."""
        index = math.ceil(math.log(value) / _LOG_GAMMA) if value > _TINY else _ZERO
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1

    def merge(self, other: Sketch) -> None:
        """Add ``other``'s values to this sketch."""
        buckets = self.buckets
        for index, count in other.buckets.items():
            buckets[index] = buckets.get(index, 0) + count
        self.count += other.count

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1) of the values added: the nearest-rank sample, ±1 %."""
        if not self.count:
            msg = "quantile of an empty sketch"
            raise ValueError(msg)
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return 0.0 if index == _ZERO else 2 * _GAMMA**index / (_GAMMA + 1)
        raise AssertionError  # unreachable: the counts add up to self.count

    def __getstate__(self) -> tuple[dict[int, int], int]:
        return self.buckets, self.count

    def __setstate__(self, state: tuple[dict[int, int], int]) -> None:
        self.buckets, self.count = state

    @classmethod
    def of(cls, values: Iterable[float]) -> Sketch:
        """A sketch of ``values``."""
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch
