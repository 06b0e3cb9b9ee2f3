"""One screen of platform health: TPS, trades, latency, consumers, DLQ, errors, stuck, alerts.

Everything comes from the metrics windows of the last ``minutes`` before the newest window,
plus open stuck trades and active alerts. Each section is aggregated and capped in
PostgreSQL (:mod:`rttm.views.status_queries`), so the rows read into Python are bounded by
``max_entries``, not by what a producer wrote.

Capped lists keep their worst entries (highest status or lag, most events, most recent) and
say how many they left out in the ``omitted`` object next to them: ``status["omitted"]``
(``consumers``, ``errors``, ``logs``, ``stuck``), ``tps["omitted"]["by_service"]``,
``latency["omitted"]["hops"]``, ``dlq["omitted"]`` (``depth``, ``by_reason``), each
consumer's ``omitted["partitions"]`` and ``alerts["omitted"]`` (``firing``, ``pending``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

from rttm.core.db.connect import DictConn
from rttm.metrics.windows import STATUS_NAMES
from rttm.views import status_queries as q
from rttm.views.alerts import active
from rttm.views.budget import DEFAULT_BUDGET_S, Deadline
from rttm.views.common import iso, number
from rttm.views.limits import DEFAULT_MAX_ENTRIES

DEFAULT_MINUTES = 15
#: Past every window: with no metrics yet, each metric query finds nothing.
_NEVER = datetime.max.replace(tzinfo=UTC)


class _Reader:
    """Runs the section queries of one status request within its deadline."""

    def __init__(self, conn: DictConn, deadline: Deadline, cap: int, since: datetime) -> None:
        self.conn, self.deadline, self.cap = conn, deadline, cap
        self.params: dict[str, Any] = {"since": since, "cap": cap}

    def rows(self, query: LiteralString, **params: Any) -> list[dict[str, Any]]:
        return self.deadline.execute(self.conn, query, {**self.params, **params})


def whole(value: float | None) -> int:
    """A count as an int (0 for a missing or non-finite value)."""
    return int(value) if value is not None and math.isfinite(value) else 0


def left_out(rows: list[dict[str, Any]]) -> int:
    """How many of a capped section's entries its rows leave out."""
    return int(rows[0]["total_rows"]) - len(rows) if rows else 0


def status(
    conn: DictConn,
    minutes: int = DEFAULT_MINUTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """The status screen as JSON-ready data (see the module docstring)."""
    deadline = deadline or Deadline(DEFAULT_BUDGET_S, "status")
    newest = deadline.execute(conn, q.NEWEST)
    result: dict[str, Any] = {"as_of": None, "window_seconds": None, "minutes": minutes}
    since, newest_start = _NEVER, None
    if newest:
        newest_start = newest[0]["window_start"]
        result["as_of"] = iso(newest[0]["window_end"])
        result["window_seconds"] = (newest[0]["window_end"] - newest_start).total_seconds()
        since = newest_start - timedelta(minutes=minutes)
    read = _Reader(conn, deadline, max_entries, since)
    result["tps"] = _tps(read)
    # ``untracked``: trades the engine let go for space (its cap), which stuck detection
    # no longer watches.
    trades = {
        row["metric"]: row["value"]
        for row in read.rows(q.TRADES, metrics=list(q.TRADE_COUNTS.values()))
    }
    result["trades"] = {key: whole(trades.get(name)) for key, name in q.TRADE_COUNTS.items()}
    result["latency"] = _latency(read)
    result["consumers"], omitted_consumers = _consumers(read)
    result["dlq"] = _dlq(read)
    errors = read.rows(q.ERRORS, newest=newest_start)
    result["errors"] = [
        {"service": row["service"], "errors": whole(row["errors"]), "rate": number(row["rate"])}
        for row in errors
    ]
    logs = read.rows(q.LOGS)
    result["logs"] = [
        {"service": row["service"], "level": row["level"], "events": whole(row["events"])}
        for row in logs
    ]
    stuck = read.rows(q.STUCK)
    result["stuck"] = [_stuck(row) for row in stuck]
    stuck_total = read.rows(q.STUCK_COUNT)[0]["n"] if len(stuck) == max_entries else len(stuck)
    result["alerts"] = active(conn, max_entries=max_entries, deadline=deadline)
    result["omitted"] = {
        "consumers": omitted_consumers,
        "errors": left_out(errors),
        "logs": left_out(logs),
        "stuck": stuck_total - len(stuck),
    }
    deadline.check()
    return result


def _stuck(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "trade_id": row["trade_id"],
        "stage": row["stage"],
        "service": row["service_name"],
        "last_event_type": row["last_event_type"],
        "last_event_time": iso(row["last_event_time"]),
        "detected_at": iso(row["detected_at"]),
    }


def _tps(read: _Reader) -> dict[str, Any]:
    totals = [(row["window_start"], row["value"]) for row in read.rows(q.TPS_SERIES)]
    last = totals[-1][0] if totals else None
    services = read.rows(q.TPS_BY_SERVICE, last=last)
    windows = len(totals) or 1
    return {
        "now": number(totals[-1][1], 2) if totals else None,
        "avg": number(sum(v for _, v in totals) / len(totals), 2) if totals else None,
        "series": [{"t": iso(start), "value": number(value, 2)} for start, value in totals],
        "by_service": [
            {
                "service": row["service"],
                "now": number(row["now"], 2),
                "avg": number(row["total"] / windows, 2),
            }
            for row in services
        ],
        "omitted": {"by_service": left_out(services)},
    }


def _latency(read: _Reader) -> dict[str, Any]:
    e2e = {row["quantile"]: number(row["value"], 1) for row in read.rows(q.E2E)}
    hops = read.rows(q.HOPS)
    return {
        "e2e": e2e or None,
        "hops": [
            {
                "from_stage": row["from_stage"],
                "to_stage": row["to_stage"],
                **{
                    name: number(value, 1)
                    for name, value in zip(row["quantiles"], row["vals"], strict=True)
                },
            }
            for row in hops
        ],
        "omitted": {"hops": left_out(hops)},
    }


def _consumers(read: _Reader) -> tuple[list[dict[str, Any]], int]:
    """The worst consumers, each with its worst partitions; and how many were left out."""
    rows = read.rows(q.CONSUMERS)
    out = []
    for row in rows:
        read.deadline.check()
        parts = [
            {
                "partition": name,
                "lag": whole(lag),
                "lag_seconds": number(seconds),
                "consume_rate": number(rate),
            }
            for name, lag, seconds, rate in zip(
                row["p_names"] or (),
                row["p_lags"] or (),
                row["p_seconds"] or (),
                row["p_rates"] or (),
                strict=True,
            )
        ]
        out.append(
            {
                "service": row["service"],
                "topic": row["topic"],
                "status": STATUS_NAMES[min(max(row["status"], 0), len(STATUS_NAMES) - 1)],
                "lag": whole(row["lag"]),
                "lag_seconds": number(row["lag_seconds"]) or 0.0,
                "time_to_data_loss_seconds": number(row["loss"]),
                "partitions": parts,
                "omitted": {"partitions": int(row["partitions"]) - len(parts)},
            }
        )
    return out, left_out(rows)


def _dlq(read: _Reader) -> dict[str, Any]:
    depth = read.rows(q.DLQ_DEPTH)
    rate = read.rows(q.DLQ_RATE)[0]["value"]
    reasons = read.rows(q.DLQ_REASONS)
    return {
        "depth": [{"topic": row["topic"], "depth": whole(row["value"])} for row in depth],
        "rate": number(rate) if rate is not None else 0.0,
        "series": [
            {"t": iso(row["window_start"]), "value": whole(row["value"])}
            for row in read.rows(q.DLQ_SERIES)
        ],
        "by_reason": [
            {"topic": row["topic"], "reason": row["reason"], "events": whole(row["events"])}
            for row in reasons
        ],
        "omitted": {"depth": left_out(depth), "by_reason": left_out(reasons)},
    }
