"""The three producer bugs of issue 17 as event streams (``python -m benchmarks.hostile``).

* ``series_flood`` — queue-metrics snapshots, each of a new service/topic/partition, spread
  over three minutes, plus DLQ events whose reasons carry ids and timestamps;
* ``trade_flood`` — trades that are created and never complete;
* ``hot_trade`` — events of 5 KB, all on the one trade ``HOT``.

The benchmark replays them at full size, ``tests/test_hostile_producers.py`` at a small one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from rttm.core.contracts import DlqEvent, Message, QueueMetrics, TradeEvent

HOT = "HOT"


def series_flood(partitions: int, reasons: int, start: datetime) -> Iterator[Message]:
    """Snapshots of ``partitions`` new partitions and ``reasons`` DLQ events over 180 s."""
    for n in range(partitions):
        yield QueueMetrics(
            service_name=f"svc-{n}",
            topic_name=f"orders-{n}",
            partition=n % 12,
            produced_offset=1_000 + n,
            consumed_offset=1_000,
            snapshot_time=start + timedelta(seconds=180 * n / partitions),
        )
    for n in range(reasons):
        at = start + timedelta(seconds=180 * n / reasons)
        yield DlqEvent(
            trade_id=f"D{n}",
            service_name="validation-service",
            topic_name="trade-dlq",
            reason=f"request req-{n:08x}{n} rejected at {at.isoformat()}: limit {n % 997}",
            event_time=at,
        )


def trade_flood(trades: int, start: datetime) -> Iterator[Message]:
    """``trades`` trades created over 120 s that never go further."""
    for n in range(trades):
        yield TradeEvent(
            trade_id=f"N{n:07d}",
            service_name="simulation-service",
            event_type="TRADE_CREATED",
            event_status="SUCCESS",
            event_time=start + timedelta(seconds=120 * n / trades),
        )


def hot_trade(events: int, start: datetime) -> Iterator[Message]:
    """``events`` events of 5 KB on the one trade ``HOT``."""
    body = "x" * 5_000
    for n in range(events):
        yield TradeEvent(
            trade_id=HOT,
            service_name="pms-core",
            event_type="POSITION_UPDATED",
            event_status="SUCCESS",
            event_time=start + timedelta(milliseconds=5 * n),
            message=f"{n} {body}",
        )
