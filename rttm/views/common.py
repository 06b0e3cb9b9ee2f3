"""Small helpers shared by the views: connections, times and alert rows as JSON values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from rttm.core.db.connect import DictConn, connect, describe, error_cause
from rttm.core.errors import RttmError

#: A view that takes longer than this is cut off (the page polls every 2 s).
STATEMENT_TIMEOUT = "5s"
#: Memory per sort or hash of a view query: with PostgreSQL's default (4 MB) a flood of label
#: sets makes the planner sort them on disk (2.2 s for 120,000 series) instead of hashing
#: them in memory (1.1 s); the views run a few queries at a time (rttm.views.budget).
WORK_MEM = "32MB"


def open_view(url: str) -> DictConn:
    """A read-only connection whose rows are dicts (errors as :class:`RttmError`).

    Read-only by the server's session setting (psycopg's ``read_only`` does nothing in
    autocommit mode), every statement bounded by ``STATEMENT_TIMEOUT``, and ``WORK_MEM``.
    """
    conn = connect(
        url,
        autocommit=True,
        default_transaction_read_only="on",
        statement_timeout=STATEMENT_TIMEOUT,
        work_mem=WORK_MEM,
    )
    conn.row_factory = dict_row  # type: ignore[assignment]
    return conn  # type: ignore[return-value]


def query_failed(url: str, exc: psycopg.Error) -> RttmError:
    """The one-line error of a query that failed after connecting."""
    hint = " (run `rttm db migrate`?)" if isinstance(exc, psycopg.errors.UndefinedTable) else ""
    return RttmError(f"query failed on postgres at {describe(url)}: {error_cause(exc)}{hint}")


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def number(value: float | None, digits: int = 3) -> float | None:
    """A float for JSON: rounded, and None for NaN or infinity."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(float(value), digits)


def alert(row: dict[str, Any]) -> dict[str, Any]:
    """An ``rttm_alerts`` row as the API shows it."""
    return {
        "rule": row["rule"],
        "labels": row["labels"],
        "state": row["state"],
        "value": number(row["value"]),
        "severity": row["severity"],
        "summary": row["summary"],
        "started_at": iso(row["started_at"]),
        "at": iso(row["at"]),
        "resolved_at": iso(row["resolved_at"]),
    }
