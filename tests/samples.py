"""A valid example message per topic (docs/design.md §1), as producers send them, and a
valid alert rules file."""

from __future__ import annotations

import json
from typing import Any

SAMPLE_MESSAGES: dict[str, dict[str, Any]] = {
    "rttm.trade.events": {
        "trade_id": "T123",
        "service_name": "validation-service",
        "event_type": "VALIDATION_SUCCESS",
        "event_status": "SUCCESS",
        "source_queue": "trade-input",
        "target_queue": "trade-valid",
        "topic_name": "trade-input",
        "partition": 2,
        "offset": 102345,
        "event_time": "2025-12-17T11:05:49Z",
        "message": "Trade validated successfully",
    },
    "rttm.queue.metrics": {
        "service_name": "validation-service",
        "topic_name": "trade-input",
        "partition": 2,
        "produced_offset": 105000,
        "consumed_offset": 102345,
        "snapshot_time": "2025-12-17T11:05:50Z",
    },
    "rttm.dlq.events": {
        "trade_id": "T124",
        "service_name": "validation-service",
        "topic_name": "trade-dlq",
        "reason": "Schema validation failed",
        "event_time": "2025-12-17T11:05:52Z",
    },
    "rttm.error.events": {
        "trade_id": "T125",
        "service_name": "pms-core",
        "error_type": "DB_TIMEOUT",
        "error_message": "Timeout while updating position",
        "event_time": "2025-12-17T11:05:53Z",
    },
    "rttm.log.events": {
        "service_name": "analytics-service",
        "log_level": "WARN",
        "log_category": "PROCESSING_DELAY",
        "trade_id": "T126",
        "message": "Analytics computation exceeded SLA",
        "event_time": "2025-12-17T11:05:54Z",
    },
}

#: Fields the contracts make optional, per topic (docs/design.md §1.2; ``event_id``
#: is optional everywhere).
OPTIONAL_FIELDS: dict[str, set[str]] = {
    "rttm.trade.events": {
        "source_queue",
        "target_queue",
        "topic_name",
        "partition",
        "offset",
        "message",
    },
    "rttm.queue.metrics": set(),
    "rttm.dlq.events": set(),
    "rttm.error.events": {"trade_id"},
    "rttm.log.events": {"trade_id"},
}


#: A rules file with one valid rule, which the rules and templates tests extend or break.
GOOD_RULES = """\
[[rules]]
name = "LagHigh"
metric = "queue_lag"
op = ">"
threshold = 10
severity = "warning"
"""


def encode(payload: dict[str, Any]) -> bytes:
    """A payload as producer bytes."""
    return json.dumps(payload).encode()
