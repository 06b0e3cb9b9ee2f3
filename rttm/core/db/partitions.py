"""Daily partitions of ``rttm_trade_events``: create ahead, list, drop past retention.

The DDL lives in SQL (``rttm_ensure_trade_event_partition``, migration 0002) so that any
process, or a cron job in psql, creates partitions the same concurrency-safe way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from psycopg import sql

from rttm.core.db.connect import Conn
from rttm.core.registry import spec_for

TABLE = spec_for("rttm.trade.events").table
PREFIX = f"{TABLE}_p"
#: Days of partitions kept ready beyond today, and before it (late or replayed events).
DEFAULT_DAYS_AHEAD = 7
DEFAULT_DAYS_BEHIND = 1


@dataclass(frozen=True)
class DayPartition:
    """One day's partition and its estimated row count (from statistics, not a count)."""

    name: str
    day: date
    estimated_rows: int


def today() -> date:
    """The current UTC day: partitions are cut at UTC midnight."""
    return datetime.now(UTC).date()


def ensure_days(conn: Conn, days: Iterable[date]) -> list[date]:
    """Create the partitions of ``days`` that do not exist; returns the days created."""
    created: list[date] = []
    for day in sorted(set(days)):
        with conn.transaction():
            row = conn.execute("SELECT rttm_ensure_trade_event_partition(%s)", (day,)).fetchone()
        if row is not None and row[0]:
            created.append(day)
    return created


def ensure_ahead(
    conn: Conn, days_ahead: int = DEFAULT_DAYS_AHEAD, days_behind: int = DEFAULT_DAYS_BEHIND
) -> list[date]:
    """Make sure partitions exist from ``days_behind`` before today to ``days_ahead`` after."""
    start = today()
    return ensure_days(
        conn, (start + timedelta(days=n) for n in range(-days_behind, days_ahead + 1))
    )


def list_partitions(conn: Conn) -> list[DayPartition]:
    """The day partitions of ``rttm_trade_events``, oldest first."""
    rows = conn.execute(
        "SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass AND c.relname LIKE %s",
        (TABLE, PREFIX + "%"),
    ).fetchall()
    parts = [
        DayPartition(name, datetime.strptime(name.removeprefix(PREFIX), "%Y%m%d").date(), rows_)  # noqa: DTZ007 - a date, no time
        for name, rows_ in rows
    ]
    return sorted(parts, key=lambda p: p.day)


def drop_older_than(conn: Conn, keep_days: int, *, dry_run: bool = False) -> list[DayPartition]:
    """Drop day partitions that end before ``today - keep_days``; returns those (to be) dropped.

    Rows in the default partition are left alone: it only holds days without a partition.
    """
    cutoff = today() - timedelta(days=keep_days)
    old = [p for p in list_partitions(conn) if p.day < cutoff]
    if not dry_run:
        for part in old:
            with conn.transaction():
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(part.name)))
    return old
