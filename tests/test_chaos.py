"""A small chaos run (``benchmarks.chaos``): SIGKILLs and PostgreSQL outages lose nothing."""

from __future__ import annotations

import pytest

from benchmarks import chaos

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kills_and_database_outages_leave_exactly_the_ground_truth() -> None:
    report = chaos.run(events=25_000, kills=5, outages=2, seed=21, rate=1_000,
                       outage_s=(10.0, 12.0))  # fmt: skip
    assert report.kills == 5
    assert len(report.outages) == 2
    assert all(seconds >= 10 for seconds in report.outages)
    assert report.ok, report.render()
    assert sum(check.stored for check in report.tables) > 20_000
