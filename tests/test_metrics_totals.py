"""Prometheus' counters of the per-window counts (``rttm_metrics_totals``), as the metrics
sink keeps them in real PostgreSQL: equal to the windows' counts, unchanged by a replay,
raised by a correction, never lowered."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import psycopg
import pytest

from rttm.core.metric_catalogue import COUNTS
from rttm.metrics.limits import Limits
from rttm.metrics.merge import MetricsOutput
from rttm.metrics.points import Labels, Point, labels_of
from rttm.metrics.store import MetricsWriter
from support.simulated import T0, raw_batches, sources
from tests.metrics_helpers import created_by, engine_config, run_engine

pytestmark = pytest.mark.integration


Key = tuple[str, Labels]


def totals(url: str) -> dict[Key, float]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT metric, labels, value FROM rttm_metrics_totals")
        return {(metric, labels_of(labels)): value for metric, labels, value in rows}


def window_sums(url: str) -> dict[Key, float]:
    """Every count-type metric's windows added up, per label set."""
    sums: dict[Key, float] = defaultdict(float)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT metric, labels, value FROM rttm_metrics WHERE metric = ANY(%s)",
            (sorted(COUNTS),),
        )
        for metric, labels, value in rows:
            sums[metric, labels_of(labels)] += value
    return dict(sums)


def test_counters_add_up_the_windows_a_replay_adds_nothing_a_correction_adds(
    migrated_db: str,
) -> None:
    on_time = [*created_by("A", 5, 1.0), *created_by("B", 4, 1.0), *created_by("C", 1, 1.0)]
    on_time += [event for n in range(1, 7) for event in created_by("A", 1, 10.0 * n + 5)]
    late = created_by("C", 6, 2.0)  # C overtakes B under a cap of 2: B is folded into __other__
    batches = raw_batches(on_time, partitions=1) + raw_batches(late, partitions=1)
    out = run_engine(
        batches, engine_config(sources=sources(batches), shards=1, limits=Limits(series=2))
    )
    assert out.corrections
    writer = MetricsWriter(migrated_db, kafka_config=None)
    try:
        writer.write([MetricsOutput(points=out.points)])
        first = totals(migrated_db)
        assert first == window_sums(migrated_db)
        started: Key = ("trades_started", ())
        assert first[started] == len(on_time)
        writer.write([MetricsOutput(points=out.points)])  # a replay after a crash
        assert totals(migrated_db) == first
        correction = MetricsOutput(corrections=out.corrections)
        writer.write([correction])
        corrected = totals(migrated_db)
        assert corrected[started] == len(on_time) + len(late)
        writer.write([correction])  # replayed too
        assert totals(migrated_db) == corrected
    finally:
        writer.close()
    # Never lowered: B's events moved into __other__ by the correction stay counted under B.
    b_events: Key = ("events", (("event_type", "TRADE_CREATED"), ("service", "B")))
    assert corrected[b_events] == first[b_events] == 4
    assert window_sums(migrated_db).get(b_events, 0) == 0
    assert all(corrected[key] >= value for key, value in first.items())


def test_a_window_written_lower_then_corrected_again_is_counted_once(migrated_db: str) -> None:
    """A replay may finalize a window before its late events (written lower), then correct
    it; and one batch may lower a label set in one window while raising it in another."""
    errors = (("error_type", "Timeout"), ("service", "pms-core"))
    start = T0
    later = T0 + timedelta(seconds=10)

    def point(at: datetime, value: float) -> Point:
        return Point("errors", errors, at, at + timedelta(seconds=10), value)

    writer = MetricsWriter(migrated_db, kafka_config=None)
    try:
        writer.write([MetricsOutput(points=[point(start, 7)])])
        writer.write([MetricsOutput(points=[point(start, 5)])])  # a replay, written lower
        writer.write([MetricsOutput(points=[point(start, 7)])])  # ... then corrected again
        assert totals(migrated_db)["errors", errors] == 7
        # In one batch: the first window lower again, the next one new with 3.
        writer.write([MetricsOutput(points=[point(start, 2), point(later, 3)])])
        assert totals(migrated_db)["errors", errors] == 10
    finally:
        writer.close()
