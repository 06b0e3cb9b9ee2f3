"""Small helpers shared by the views: connections, times and alert rows as JSON values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from rttm.db.connect import connect

Conn = psycopg.Connection[dict[str, Any]]
ALERT_COLUMNS = "rule, labels, state, value, severity, summary, started_at, at, resolved_at"


def open_view(url: str) -> Conn:
    """A read-only autocommit connection whose rows are dicts (errors as :class:`RttmError`)."""
    conn = connect(url, autocommit=True)
    conn.read_only = True
    conn.row_factory = dict_row  # type: ignore[assignment]
    return conn  # type: ignore[return-value]


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
        "rule": row["rule"], "labels": row["labels"], "state": row["state"],
        "value": number(row["value"]), "severity": row["severity"], "summary": row["summary"],
        "started_at": iso(row["started_at"]), "at": iso(row["at"]),
        "resolved_at": iso(row["resolved_at"]),
    }  # fmt: skip
