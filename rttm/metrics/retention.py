"""Retention of the metrics engine's results, beside the trade-event partitions it reads.

``rttm db prune --keep-days N`` drops what is older than N days before today: metrics
windows; alert instances that ended (a pending or firing one keeps its whole history, however
old), with their outbox rows; stuck-trade rows whose last event is that old (the trade's
events are pruned with their partition anyway); notes of events the metrics left uncounted;
the counters of label sets not counted since then.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

#: table -> (rows to delete given a cutoff %(cutoff)s); each is one statement.
_OLD = {
    # First, while the alert rows that date them are still there.
    "rttm_alert_outbox": (
        "FROM rttm_alert_outbox o WHERE EXISTS ("
        " SELECT 1 FROM rttm_alerts b WHERE b.rule = o.rule AND b.labels = o.labels"
        " AND b.started_at = o.started_at AND b.state IN ('resolved', 'inactive')"
        " AND b.at < %(cutoff)s)"
        " OR NOT EXISTS (SELECT 1 FROM rttm_alerts a WHERE a.rule = o.rule"
        " AND a.labels = o.labels AND a.started_at = o.started_at)"
    ),
    "rttm_metrics": "FROM rttm_metrics WHERE window_start < %(cutoff)s",
    "rttm_metrics_counted": "FROM rttm_metrics_counted WHERE window_start < %(cutoff)s",
    # A label set not counted since the cutoff: its counter ends (Prometheus marks it stale).
    "rttm_metrics_totals": "FROM rttm_metrics_totals WHERE updated_at < %(cutoff)s",
    "rttm_alerts": (
        "FROM rttm_alerts a WHERE a.at < %(cutoff)s AND EXISTS ("
        " SELECT 1 FROM rttm_alerts b WHERE b.rule = a.rule AND b.labels = a.labels"
        " AND b.started_at = a.started_at AND b.state IN ('resolved', 'inactive')"
        " AND b.at < %(cutoff)s)"
    ),
    "rttm_stuck_trades": "FROM rttm_stuck_trades WHERE last_event_time < %(cutoff)s",
    # By either time: an event dated years ahead (a wrong clock) goes when its note is old.
    "rttm_metrics_uncounted": (
        "FROM rttm_metrics_uncounted WHERE event_time < %(cutoff)s OR noted_at < %(cutoff)s"
    ),
}


def prune_results(
    conn: psycopg.Connection[Any], cutoff: date, *, dry_run: bool = False
) -> dict[str, int]:
    """Rows older than ``cutoff`` (UTC midnight) per table: deleted, or counted if dry."""
    counts = {}
    with conn.transaction():
        for table, rows in _OLD.items():
            verb = "SELECT count(*)" if dry_run else "DELETE"
            cursor = conn.execute(f"{verb} {rows}", {"cutoff": cutoff})
            counts[table] = int(cursor.fetchone()[0]) if dry_run else cursor.rowcount  # type: ignore[index]
    return counts
