"""A small chaos run (``support.chaos``): SIGKILLs and PostgreSQL outages lose nothing.

The assertions read what the harness observed: each kill met a running flow that was
storing rows and the SIGKILL ended it; each outage lasted 10 s or more and the same flow
process waited it out (no crash, no restart), stored rows again after it and said so once
each way; every table and every reject matches the messages really sent. The metrics flow,
killed with the ingestion, agrees with the tables once its windows settle.
"""

from __future__ import annotations

import signal

import pytest

from support import chaos

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kills_and_database_outages_leave_exactly_the_ground_truth() -> None:
    report = chaos.run(
        events=25_000, kills=5, outages=2, seed=21, rate=1_000, outage_s=(10.0, 12.0)
    )
    text = report.render()
    assert [kill.alive for kill in report.kills] == [True] * 5, text
    assert all(kill.rows_since_start > 0 for kill in report.kills), text
    assert [kill.returncode for kill in report.kills] == [-signal.SIGKILL] * 5, text
    assert len(report.outages) == 2, text
    for outage in report.outages:
        assert outage.down_s >= 10, text
        assert outage.survived, text
        assert outage.stored_after, text
        assert (outage.said_unavailable, outage.said_back) == (1, 1), text
    assert all(check.ok for check in report.tables), text
    assert not report.odd_rejects, text
    rejects = next(check for check in report.tables if check.table == "rttm_ingest_rejects")
    assert rejects.stored > 200, text  # about 1 % of the messages are malformed
    assert report.metrics is not None, text
    assert report.metrics.compared > 100, text  # settled windows were recounted
    assert report.metrics.differences == (), text
    assert report.metrics_alive, text
    assert report.ok, text
