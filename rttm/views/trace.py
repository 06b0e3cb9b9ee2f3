"""One trade's timeline across services: events, hops, DLQ entries, errors, logs, stage.

Bounded, so one hot trade (20,000 events of 5 KB) cannot take the server's memory: a trace
is the newest ``limit`` events plus a cursor to the next older page, the newest few DLQ
entries, errors and logs, and long texts cut in SQL (the full text is fetched on demand by
:func:`full_text`). Counts, outcome and stage come from aggregate queries, not from the rows.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, LiteralString, NamedTuple, TypeAlias

from rttm.core.db.connect import DictConn
from rttm.metrics.pipeline import Pipeline
from rttm.views.budget import Deadline
from rttm.views.common import iso, number

#: Events per page unless the caller asks otherwise; 500 rows render at once in a browser.
DEFAULT_LIMIT = 500
#: The most events one page may hold (about 12 MB of JSON with every message cut).
MAX_LIMIT = 5000
#: DLQ entries, errors and log lines listed (the newest); their totals are always given.
SIDE_LIMIT = 100
#: Longer texts are cut to this many characters in lists; a stack trace's top fits.
TEXT_CHARS = 2000

#: What :func:`full_text` can read: a trace list's name.
TextSource: TypeAlias = Literal["events", "dlq", "errors", "logs"]

# Every list is the newest rows first (the views reverse them) on the full sort key; long
# texts are cut here, in SQL, above each LIMIT, so neither this server nor PostgreSQL reads
# a hot trade's whole payload.
_SUMMARY = """
SELECT (SELECT count(*) FROM rttm_trade_events WHERE trade_id = %(trade)s) AS total,
       (SELECT count(*) FROM rttm_dlq_events WHERE trade_id = %(trade)s) AS dlq_total,
       (SELECT count(*) FROM rttm_error_events WHERE trade_id = %(trade)s) AS errors_total,
       (SELECT count(*) FROM rttm_parsed_logs WHERE trade_id = %(trade)s) AS logs_total,
       EXISTS (SELECT 1 FROM rttm_trade_events
               WHERE trade_id = %(trade)s AND event_type = ANY(%(completed)s)) AS completed,
       EXISTS (SELECT 1 FROM rttm_trade_events
               WHERE trade_id = %(trade)s AND event_type = ANY(%(rejected)s)) AS rejected,
       (SELECT service_name FROM rttm_trade_events WHERE trade_id = %(trade)s
        ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC LIMIT 1) AS service,
       (SELECT event_type FROM rttm_trade_events
        WHERE trade_id = %(trade)s AND event_type = ANY(%(known)s)
        ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC LIMIT 1) AS staged_type
"""
# The keyset is the full sort key, so events sharing an event_time are neither lost nor
# repeated between pages. Messages are cut above the LIMIT: however the planner finds the
# page (it may sort every older event of a hot trade), only the page's messages are read
# whole from TOAST, never the trade's.
_EVENTS = """
SELECT event_time, service_name, event_type, event_status, source_queue, target_queue,
       queue_partition, queue_offset, dedupe_key, kafka_partition, kafka_offset,
       left(message, %(chars)s) AS message, length(message) AS message_length
FROM (SELECT * FROM rttm_trade_events
      WHERE trade_id = %(trade)s
        AND (%(time)s::timestamptz IS NULL OR (event_time <= %(time)s
             AND (event_time, kafka_partition, kafka_offset)
                 < (%(time)s, %(partition)s, %(offset)s)))
      ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC
      LIMIT %(rows)s) AS page
ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC
"""
_DLQ = """
SELECT event_time, service_name, topic_name, dedupe_key,
       left(reason, %(chars)s) AS reason, length(reason) AS reason_length
FROM (SELECT * FROM rttm_dlq_events WHERE trade_id = %(trade)s
      ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC LIMIT %(rows)s) AS page
ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC
"""
_ERRORS = """
SELECT event_time, service_name, error_type, dedupe_key,
       left(error_message, %(chars)s) AS error_message,
       length(error_message) AS error_message_length
FROM (SELECT * FROM rttm_error_events WHERE trade_id = %(trade)s
      ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC LIMIT %(rows)s) AS page
ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC
"""
_LOGS = """
SELECT event_time, service_name, log_level, log_category, dedupe_key,
       left(message, %(chars)s) AS message, length(message) AS message_length
FROM (SELECT * FROM rttm_parsed_logs WHERE trade_id = %(trade)s
      ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC LIMIT %(rows)s) AS page
ORDER BY event_time DESC, kafka_partition DESC, kafka_offset DESC
"""
_STUCK = """
SELECT stage, service_name, last_event_type, last_event_time, detected_at, recovered_at
FROM rttm_stuck_trades WHERE trade_id = %(trade)s ORDER BY last_event_time DESC LIMIT 1
"""
#: Each source's table, text column; a row is found by its key and time.
_FULL_TEXT: dict[TextSource, LiteralString] = {
    "events": "SELECT message AS text FROM rttm_trade_events"
    " WHERE dedupe_key = %(key)s AND event_time = %(time)s",
    "dlq": "SELECT reason AS text FROM rttm_dlq_events"
    " WHERE dedupe_key = %(key)s AND event_time = %(time)s",
    "errors": "SELECT error_message AS text FROM rttm_error_events"
    " WHERE dedupe_key = %(key)s AND event_time = %(time)s",
    "logs": "SELECT message AS text FROM rttm_parsed_logs"
    " WHERE dedupe_key = %(key)s AND event_time = %(time)s",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class BadCursor(ValueError):
    """A ``before`` cursor that no trace handed out."""


class Cursor(NamedTuple):
    """Where a page ends: the sort key of its oldest event; the next page is older."""

    time: datetime
    partition: int
    offset: int

    def encode(self) -> str:
        """The opaque text form handed to clients (base64url of the three numbers)."""
        micros = (self.time - _EPOCH) // _MICROSECOND
        raw = f"{micros}.{self.partition}.{self.offset}".encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor ``text`` stands for; raises :class:`BadCursor` (one line) if malformed."""
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
        micros, partition, offset = (int(part) for part in raw.split("."))
        if partition < 0 or offset < 0:
            raise ValueError
        return Cursor(_EPOCH + micros * _MICROSECOND, partition, offset)
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
        msg = f"malformed cursor {text[:40]!r}: pass the `next` value of a trace unchanged"
        raise BadCursor(msg) from None


def _cut(row: dict[str, Any], column: str, name: str) -> dict[str, Any]:
    """A text column as ``name``, with ``name_length`` and ``name_truncated``."""
    length = row[f"{column}_length"]
    return {
        name: row[column],
        f"{name}_length": length,
        f"{name}_truncated": length is not None and length > TEXT_CHARS,
    }


def _event(row: dict[str, Any], older: datetime | None) -> dict[str, Any]:
    since = None
    if older is not None:
        since = number((row["event_time"] - older).total_seconds() * 1000, 1)
    return {
        "time": iso(row["event_time"]),
        "key": row["dedupe_key"],
        "service": row["service_name"],
        "event_type": row["event_type"],
        "status": row["event_status"],
        "source_queue": row["source_queue"],
        "target_queue": row["target_queue"],
        "queue_partition": row["queue_partition"],
        "queue_offset": row["queue_offset"],
        **_cut(row, "message", "message"),
        "since_previous_ms": since,
    }


class _Reader:
    """Runs a trace's queries, each within what is left of the request's budget (if any)."""

    def __init__(self, conn: DictConn, deadline: Deadline | None) -> None:
        self._conn, self._deadline = conn, deadline

    def rows(self, query: LiteralString, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self._deadline is None:
            return self._conn.execute(query, params).fetchall()
        return self._deadline.execute(self._conn, query, params)


def _events(
    conn: _Reader, trade_id: str, limit: int, before: Cursor | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, oldest first, and the cursor of the next older page (None if none)."""
    time, partition, offset = before or (None, None, None)
    rows = conn.rows(
        _EVENTS,
        {
            "trade": trade_id,
            "chars": TEXT_CHARS,
            "rows": limit + 1,
            "time": time,
            "partition": partition,
            "offset": offset,
        },
    )
    # The extra row, if any, is the event just older than the page: it says there is a
    # next page and times the page's first hop.
    rows.reverse()
    extra = rows.pop(0) if len(rows) > limit else None
    older = None if extra is None else extra["event_time"]
    events = []
    for row in rows:
        events.append(_event(row, older))
        older = row["event_time"]
    if extra is None:
        return events, None
    first = rows[0]
    return events, Cursor(
        first["event_time"], first["kafka_partition"], first["kafka_offset"]
    ).encode()


def _side(conn: _Reader, query: LiteralString, trade_id: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of a DLQ/error/log query, oldest first."""
    params = {"trade": trade_id, "chars": TEXT_CHARS, "rows": limit}
    return list(reversed(conn.rows(query, params)))


def _stuck(conn: _Reader, trade_id: str) -> dict[str, Any] | None:
    found = conn.rows(_STUCK, {"trade": trade_id})
    if not found:
        return None
    row = found[0]
    return {
        "stage": row["stage"],
        "service": row["service_name"],
        "last_event_type": row["last_event_type"],
        "last_event_time": iso(row["last_event_time"]),
        "detected_at": iso(row["detected_at"]),
        "recovered_at": iso(row["recovered_at"]),
    }


def _lists(conn: _Reader, trade_id: str, limit: int) -> dict[str, list[dict[str, Any]]]:
    """The newest DLQ entries, errors and log lines, each text cut."""
    side = min(limit, SIDE_LIMIT)
    return {
        "dlq": [
            {
                "time": iso(r["event_time"]),
                "key": r["dedupe_key"],
                "service": r["service_name"],
                "topic": r["topic_name"],
                **_cut(r, "reason", "reason"),
            }
            for r in _side(conn, _DLQ, trade_id, side)
        ],
        "errors": [
            {
                "time": iso(r["event_time"]),
                "key": r["dedupe_key"],
                "service": r["service_name"],
                "error_type": r["error_type"],
                **_cut(r, "error_message", "error_message"),
            }
            for r in _side(conn, _ERRORS, trade_id, side)
        ],
        "logs": [
            {
                "time": iso(r["event_time"]),
                "key": r["dedupe_key"],
                "service": r["service_name"],
                "level": r["log_level"],
                "category": r["log_category"],
                **_cut(r, "message", "message"),
            }
            for r in _side(conn, _LOGS, trade_id, side)
        ],
    }


def trace(
    conn: DictConn,
    trade_id: str,
    pipeline: Pipeline,
    limit: int = DEFAULT_LIMIT,
    before: Cursor | None = None,
    deadline: Deadline | None = None,
) -> dict[str, Any] | None:
    """A page of the trade's timeline (the newest ``limit`` events older than ``before``).

    None if no event of the trade is stored. ``next`` is the cursor of the next older page,
    None on the last. Outcome, stage and service are the whole trade's, on every page.
    With a ``deadline``, every query runs within what is left of it.
    """
    if not 1 <= limit <= MAX_LIMIT:
        msg = f"limit must be from 1 to {MAX_LIMIT}, got {limit}"
        raise ValueError(msg)
    reader = _Reader(conn, deadline)
    found = reader.rows(
        _SUMMARY,
        {
            "trade": trade_id,
            "completed": sorted(pipeline.completed),
            "rejected": sorted(pipeline.rejected),
            "known": sorted(pipeline.moves),
        },
    )
    summary = found[0] if found else None
    if summary is None or not summary["total"]:
        return None
    outcome = (
        "completed" if summary["completed"] else "rejected" if summary["rejected"] else "in flight"
    )
    stage = None
    if summary["staged_type"] is not None:  # the latest event the pipeline knows
        stage = pipeline.stages[pipeline.moves[summary["staged_type"]][0]].name
    events, cursor = _events(reader, trade_id, limit, before)
    return {
        "trade_id": trade_id,
        "stage": stage,
        "service": summary["service"],
        "outcome": outcome,
        "stuck": _stuck(reader, trade_id),
        "total": summary["total"],
        "next": cursor,
        "events": events,
        **_lists(reader, trade_id, limit),
        "dlq_total": summary["dlq_total"],
        "errors_total": summary["errors_total"],
        "logs_total": summary["logs_total"],
    }


def full_text(
    conn: DictConn, source: TextSource, key: str, time: datetime, deadline: Deadline | None = None
) -> str | None:
    """The whole text of one listed row (by its ``key`` and ``time``), or None if absent.

    The message of a trade event or log line, the reason of a DLQ entry, or the message of
    an error; a trace's lists cut these at ``TEXT_CHARS``.
    """
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    found = _Reader(conn, deadline).rows(_FULL_TEXT[source], {"key": key, "time": time})
    return None if not found else str(found[0]["text"])
