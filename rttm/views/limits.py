"""How much a view may show and spend: entries per section, series per metric, seconds.

A producer with a bug can write tens of thousands of label sets; the views must stay small
and fast whatever the tables hold, so every list they return is capped (the worst entries
kept, the rest counted in ``omitted``) and every request has a time budget. Each limit is an
option of ``rttm serve`` (and of ``rttm status`` / ``rttm alerts`` for the entries), else an
environment variable, else the default here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from rttm.core.config import ConfigError
from rttm.views.budget import DEFAULT_BUDGET_S, DEFAULT_CONCURRENT

ENV_MAX_ENTRIES = "RTTM_VIEW_MAX_ENTRIES"
ENV_MAX_SERIES = "RTTM_VIEW_MAX_SERIES"
ENV_REQUEST_BUDGET = "RTTM_VIEW_REQUEST_BUDGET"
#: Entries per section of a view: a screen of 100 rows is already more than one reads.
DEFAULT_MAX_ENTRIES = 100
#: Series per metric on ``/metrics``: larger than the engine's ~2,000 label sets per window
#: would need, small enough that a scrape stays ~1 MB when every metric is flooded.
DEFAULT_MAX_SERIES = 2_000
MAX_ENTRIES_RANGE = (1, 10_000)
MAX_SERIES_RANGE = (1, 100_000)
BUDGET_RANGE = (0.001, 600.0)
T = TypeVar("T", int, float)


@dataclass(frozen=True)
class ViewLimits:
    """The caps and the time budget of the views served by one process."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    max_series: int = DEFAULT_MAX_SERIES
    budget_s: float = DEFAULT_BUDGET_S
    concurrent: int = DEFAULT_CONCURRENT


def _resolve(
    given: T | None,
    env: Mapping[str, str],
    option: str,
    variable: str,
    kind: Callable[[str], T],
    default: T,
    bounds: tuple[T, T],
) -> T:
    """``given`` (an option, already checked), else ``variable`` checked here, else ``default``."""
    if given is not None:
        return given
    text = env.get(variable, "").strip()
    if not text:
        return default
    low, high = bounds
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        msg = f"{option} / {variable} must be from {low:g} to {high:g}, got {text!r}"
        raise ConfigError(msg)
    return value


def max_entries(given: int | None = None, env: Mapping[str, str] = os.environ) -> int:
    """Entries per section (``--max-entries``, ``RTTM_VIEW_MAX_ENTRIES``)."""
    return _resolve(
        given, env, "--max-entries", ENV_MAX_ENTRIES, int, DEFAULT_MAX_ENTRIES, MAX_ENTRIES_RANGE
    )


def view_limits(
    entries: int | None = None,
    series: int | None = None,
    budget_s: float | None = None,
    env: Mapping[str, str] = os.environ,
) -> ViewLimits:
    """The limits of ``rttm serve``: its options, else the environment, else the defaults."""
    return ViewLimits(
        max_entries=max_entries(entries, env),
        max_series=_resolve(
            series, env, "--max-series", ENV_MAX_SERIES, int, DEFAULT_MAX_SERIES, MAX_SERIES_RANGE
        ),
        budget_s=_resolve(
            budget_s,
            env,
            "--request-budget",
            ENV_REQUEST_BUDGET,
            float,
            DEFAULT_BUDGET_S,
            BUDGET_RANGE,
        ),
    )
