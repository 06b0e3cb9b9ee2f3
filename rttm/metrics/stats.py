"""Process-local counters of the metrics flow: ``rttm metrics``'s live line and port.

Updated from the Bytewax worker threads under one lock, as the ingestion's
(``rttm.ingest.stats``): they are Prometheus counters, which must not lose increments. The
merge step runs on one worker of one process, so in a cluster only that process knows the
windows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Totals since the process started, and the engine's latest view."""

    events: int = 0  # messages read and decoded (valid or not)
    windows: int = 0  # windows finalized (written)
    stuck_open: int = 0  # trades stuck in the newest finalized window
    alerts_firing: int = 0
    watermark: float | None = None  # every window ending at or before it is final
    #: Label sets folded into ``__other__`` per metric (the series cap), since the start.
    series_dropped: dict[str, int] = field(default_factory=dict)
    #: Series of each alert rule watched together as one ``__other__`` alert (the cap).
    alerts_folded: dict[str, int] = field(default_factory=dict)
    #: Trades and queue partitions let go for space (the state caps), since the start.
    evicted: dict[str, int] = field(default_factory=dict)
    #: Events past the correction horizon, late ones applied to their window, repeats.
    late: int = 0
    corrected: int = 0
    repeated: int = 0
    corrections: int = 0  # windows rewritten by the merge step
    started: float = field(default_factory=time.monotonic)


COUNTERS = Counters()
_LOCK = threading.Lock()


def record_read(count: int) -> None:
    """The engine decoded ``count`` messages of one batch."""
    with _LOCK:
        COUNTERS.events += count


def record_finalized(windows: int, watermark: float, stuck_open: int, firing: int) -> None:
    """The merge step finalized ``windows`` windows up to ``watermark`` (epoch seconds)."""
    with _LOCK:
        COUNTERS.windows += windows
        COUNTERS.watermark = watermark
        COUNTERS.stuck_open = stuck_open
        COUNTERS.alerts_firing = firing


def record_folded(metric: str, dropped: int) -> None:
    """``dropped`` label sets of ``metric`` were folded into ``__other__`` in a window."""
    with _LOCK:
        COUNTERS.series_dropped[metric] = COUNTERS.series_dropped.get(metric, 0) + dropped


def record_evicted(state: str, count: int) -> None:
    """``count`` entries of ``state`` ("trades", "partitions") were let go for space."""
    with _LOCK:
        COUNTERS.evicted[state] = COUNTERS.evicted.get(state, 0) + count


def record_alerts_folded(rule: str, count: int) -> None:
    """``count`` series of ``rule`` were watched as its ``__other__`` alert in a window."""
    with _LOCK:
        COUNTERS.alerts_folded[rule] = COUNTERS.alerts_folded.get(rule, 0) + count


def record_arrivals(late: int, corrected: int, repeated: int) -> None:
    """A shard found ``late`` events past the horizon, ``corrected`` applied, ``repeated``."""
    with _LOCK:
        COUNTERS.late += late
        COUNTERS.corrected += corrected
        COUNTERS.repeated += repeated


def record_corrections(windows: int) -> None:
    """The merge step rewrote ``windows`` closed windows with late events."""
    with _LOCK:
        COUNTERS.corrections += windows
