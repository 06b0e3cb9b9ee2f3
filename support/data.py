"""Seeded message generator of the micro benchmarks and the workload: realistic payloads."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

SERVICES = ["trade-capture-service", "validation-service", "pms-core", "analytics-service"]
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def payload(topic: str, rng: random.Random, n: int) -> dict[str, Any]:
    """The ``n``-th synthetic message of ``topic``."""
    when = (START + timedelta(milliseconds=n)).isoformat().replace("+00:00", "Z")
    trade = f"T{rng.randrange(10**9):09d}"
    service = rng.choice(SERVICES)
    if topic == "rttm.trade.events":
        return {
            "trade_id": trade,
            "service_name": service,
            "event_type": "VALIDATION_SUCCESS",
            "event_status": "SUCCESS",
            "source_queue": "trade-input",
            "target_queue": "trade-valid",
            "topic_name": "trade-input",
            "partition": rng.randrange(6),
            "offset": n,
            "event_time": when,
            "message": "Trade validated successfully",
        }
    if topic == "rttm.queue.metrics":
        return {
            "service_name": service,
            "topic_name": "trade-input",
            "partition": rng.randrange(6),
            "produced_offset": n + 500,
            "consumed_offset": n,
            "snapshot_time": when,
        }
    if topic == "rttm.dlq.events":
        return {
            "trade_id": trade,
            "service_name": service,
            "topic_name": "trade-dlq",
            "reason": "Schema validation failed",
            "event_time": when,
        }
    if topic == "rttm.error.events":
        return {
            "trade_id": trade,
            "service_name": service,
            "error_type": "DB_TIMEOUT",
            "error_message": "Timeout while updating position",
            "event_time": when,
        }
    return {
        "service_name": service,
        "log_level": "WARN",
        "log_category": "PROCESSING_DELAY",
        "trade_id": trade,
        "message": "Analytics computation exceeded SLA",
        "event_time": when,
    }


def messages(topic: str, count: int, seed: int = 7, invalid: bool = False) -> list[bytes]:
    """``count`` encoded messages; ``invalid`` ones each break one rule (naive timestamp)."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        body = payload(topic, rng, n)
        if invalid:
            for name in ("event_time", "snapshot_time"):
                if name in body:
                    body[name] = body[name].removesuffix("Z")
        out.append(json.dumps(body).encode())
    return out
