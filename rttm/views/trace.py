"""One trade's timeline across services: events, hops, DLQ entries, errors, logs, stage."""

from __future__ import annotations

from typing import Any

from rttm.metrics.pipeline import Pipeline
from rttm.views.common import Conn, iso, number

_EVENTS = """
SELECT event_time, service_name, event_type, event_status, source_queue, target_queue,
       queue_partition, queue_offset, message
FROM rttm_trade_events WHERE trade_id = %s
ORDER BY event_time, kafka_partition, kafka_offset
"""
_DLQ = """
SELECT event_time, service_name, topic_name, reason
FROM rttm_dlq_events WHERE trade_id = %s ORDER BY event_time
"""
_ERRORS = """
SELECT event_time, service_name, error_type, error_message
FROM rttm_error_events WHERE trade_id = %s ORDER BY event_time
"""
_LOGS = """
SELECT event_time, service_name, log_level, log_category, message
FROM rttm_parsed_logs WHERE trade_id = %s ORDER BY event_time
"""
_STUCK = """
SELECT stage, service_name, last_event_type, last_event_time, detected_at, recovered_at
FROM rttm_stuck_trades WHERE trade_id = %s ORDER BY last_event_time DESC LIMIT 1
"""


def trace(conn: Conn, trade_id: str, pipeline: Pipeline) -> dict[str, Any] | None:
    """The trade's timeline, or None if no event of it is stored."""
    rows = conn.execute(_EVENTS, (trade_id,)).fetchall()
    if not rows:
        return None
    events = []
    previous = None
    for row in rows:
        since = None
        if previous is not None:
            since = number((row["event_time"] - previous).total_seconds() * 1000, 1)
        previous = row["event_time"]
        events.append({
            "time": iso(row["event_time"]), "service": row["service_name"],
            "event_type": row["event_type"], "status": row["event_status"],
            "source_queue": row["source_queue"], "target_queue": row["target_queue"],
            "queue_partition": row["queue_partition"], "queue_offset": row["queue_offset"],
            "message": row["message"], "since_previous_ms": since,
        })  # fmt: skip
    types = {row["event_type"] for row in rows}
    outcome = (
        "completed" if types & pipeline.completed
        else "rejected" if types & pipeline.rejected
        else "in flight"
    )  # fmt: skip
    stage = None
    for row in reversed(rows):  # the stage of the latest event the pipeline knows
        move = pipeline.moves.get(row["event_type"])
        if move is not None:
            stage = pipeline.stages[move[0]].name
            break
    stuck_row = conn.execute(_STUCK, (trade_id,)).fetchone()
    stuck = None
    if stuck_row is not None:
        stuck = {
            "stage": stuck_row["stage"], "service": stuck_row["service_name"],
            "last_event_type": stuck_row["last_event_type"],
            "last_event_time": iso(stuck_row["last_event_time"]),
            "detected_at": iso(stuck_row["detected_at"]),
            "recovered_at": iso(stuck_row["recovered_at"]),
        }  # fmt: skip
    return {
        "trade_id": trade_id, "stage": stage, "service": rows[-1]["service_name"],
        "outcome": outcome, "stuck": stuck, "events": events,
        "dlq": [{"time": iso(r["event_time"]), "service": r["service_name"],
                 "topic": r["topic_name"], "reason": r["reason"]}
                for r in conn.execute(_DLQ, (trade_id,)).fetchall()],
        "errors": [{"time": iso(r["event_time"]), "service": r["service_name"],
                    "error_type": r["error_type"], "error_message": r["error_message"]}
                   for r in conn.execute(_ERRORS, (trade_id,)).fetchall()],
        "logs": [{"time": iso(r["event_time"]), "service": r["service_name"],
                  "level": r["log_level"], "category": r["log_category"], "message": r["message"]}
                 for r in conn.execute(_LOGS, (trade_id,)).fetchall()],
    }  # fmt: skip
