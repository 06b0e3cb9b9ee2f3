"""Raw Kafka batches → compact per-shard chunks of the facts the metrics need.

Validation is the ingestion's (:func:`rttm.core.decode.validated`), so a message the
ingestion rejects is counted as invalid here too. Events become plain tuples with the event
time as epoch seconds, read by named positions (``event[TIME]``): the shard logic touches
millions of them, and tuples of str/float are the cheapest thing Python has to build and to
pickle between workers (NamedTuples cost the engine 28 % in ``benchmarks/bench_metrics.py``).
Counted events (all but queue snapshots) end in ``(time, Kafka offset, id key)``: the
offset names an event the engine leaves uncounted (``rttm_metrics_uncounted``), the key
(:func:`rttm.metrics.repeats.id_key`) drops repeats.

Every raw batch sends a chunk to *every* shard, empty or not: the chunk carries the
source partition's progress (its newest event time), from which each shard derives its
watermark — a shard must hear that a partition moved on even when none of the partition's
events belong to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rttm.core.contracts import DlqEvent, ErrorEvent, LogEvent, QueueMetrics, TradeEvent
from rttm.core.decode import Refusal, validated
from rttm.core.registry import BY_NAME, TopicSpec
from rttm.core.stream.shards import shard_keys, shard_of
from rttm.core.stream.source import RawBatch
from rttm.metrics import stats
from rttm.metrics.reasons import reason_group
from rttm.metrics.repeats import id_key

#: (trade_id, service, event_type, time, offset, key)
Trade = tuple[str, str, str, float, int, int]
#: (service, topic, partition, produced_offset, consumed_offset, time)
Snapshot = tuple[str, str, int, int, int, float]
#: (dlq topic, reason, time, offset, key)
Dlq = tuple[str, str, float, int, int]
#: (service, error_type, time, offset, key)
Error = tuple[str, str, float, int, int]
#: (service, level, category, time, offset, key)
Log = tuple[str, str, str, float, int, int]

#: The fields of a counted event (all but a snapshot) by name: it ends in its time, its
#: Kafka offset and its id key, and what comes before the time is what it is counted by
#: (a DLQ event's topic and reason; a trade event's id, then its service and event type).
TIME, OFFSET, KEY = -3, -2, -1
LABELS = slice(None, TIME)
TRADE_LABELS = slice(1, TIME)
#: A log event's level (its second field; the first is its service).
LOG_LEVEL = 1
#: A snapshot's time: its last field.
SNAPSHOT_TIME = -1

TRADE, QUEUE, DLQ, ERROR, LOG = "trade", "queue", "dlq", "error", "log"
#: Where the event time is in each kind's tuple.
TIME_AT = {TRADE: TIME, QUEUE: SNAPSHOT_TIME, DLQ: TIME, ERROR: TIME, LOG: TIME}


@dataclass(slots=True)
class Facts:
    """One shard's part of one raw batch."""

    shard: str  # the shard key this chunk is for
    source: str  # "topic/partition": whose progress ``high`` reports
    topic: str
    partition: int
    kind: str  # TRADE, QUEUE, DLQ, ERROR or LOG: what ``events`` holds
    high: float  # newest event time in the whole raw batch (-inf: none valid)
    caught_up: bool = False  # an empty batch: the partition is read to its end (heartbeat)
    events: list[Any] = field(default_factory=list)
    #: Messages the contract refuses. They have no trustworthy event time, so the shard
    #: counts them in the window of the batch's newest valid event (or its own newest).
    invalid: int = 0


def _trade(e: TradeEvent, offset: int) -> tuple[str, Trade]:
    moment = e.event_time.timestamp()
    # Keyed by id and time, as rttm_trade_events is (its key is dedupe_key, event_time).
    return e.trade_id, (
        e.trade_id,
        e.service_name,
        e.event_type,
        moment,
        offset,
        id_key(e.event_id, moment),
    )


def _queue(e: QueueMetrics, _offset: int) -> tuple[str, Snapshot]:
    return f"{e.topic_name}-{e.partition}", (
        e.service_name,
        e.topic_name,
        e.partition,
        e.produced_offset,
        e.consumed_offset,
        e.snapshot_time.timestamp(),
    )


def _dlq(e: DlqEvent, offset: int) -> tuple[str, Dlq]:
    # The reason is a label: grouped and cut here, so the engine never holds a stack trace,
    # or one series per trade id, per reason (the DLQ rows keep the exact text).
    return e.trade_id, (
        e.topic_name,
        reason_group(e.reason),
        e.event_time.timestamp(),
        offset,
        id_key(e.event_id),
    )


def _error(e: ErrorEvent, offset: int) -> tuple[str, Error]:
    return e.service_name, (
        e.service_name,
        e.error_type,
        e.event_time.timestamp(),
        offset,
        id_key(e.event_id),
    )


def _log(e: LogEvent, offset: int) -> tuple[str, Log]:
    return e.service_name, (
        e.service_name,
        e.log_level,
        e.log_category,
        e.event_time.timestamp(),
        offset,
        id_key(e.event_id),
    )


class Uncounted(NamedTuple):
    """An event the engine read but left out on purpose: past the horizon, or from the future.

    Named by its Kafka coordinates, which the ingestion stores with its row, so that
    ``rttm metrics verify`` can leave it out of its recount too.
    """

    topic: str
    partition: int
    offset: int
    time: float
    reason: str  # "late" or "future"


#: contract → (kind, routing key and compact tuple of an event at a Kafka offset)
_EXTRACT: dict[type, tuple[str, Callable[[Any, int], tuple[str, Any]]]] = {
    TradeEvent: (TRADE, _trade),
    QueueMetrics: (QUEUE, _queue),
    DlqEvent: (DLQ, _dlq),
    ErrorEvent: (ERROR, _error),
    LogEvent: (LOG, _log),
}


def facts_by_shard(batch: RawBatch, shards: int) -> list[tuple[str, Facts]]:
    """``(shard key, chunk)`` for every shard; events routed by trade, queue or service."""
    spec: TopicSpec = BY_NAME[batch.topic]
    kind, extract = _EXTRACT[spec.struct]
    source = f"{batch.topic}/{batch.partition}"
    caught_up = not batch.messages
    chunks = [
        Facts(key, source, batch.topic, batch.partition, kind, float("-inf"), caught_up)
        for key in shard_keys(shards)
    ]
    at = TIME_AT[kind]
    high = float("-inf")
    stats.record_read(len(batch.messages))
    for message in batch.messages:
        value = message.value()
        if not value:
            chunks[0].invalid += 1
            continue
        try:
            key, event = extract(validated(spec, value), message.offset() or 0)
        except Refusal:
            chunks[0].invalid += 1
            continue
        moment = event[at]
        if moment > high:
            high = moment
        chunks[shard_of(key, shards) if shards > 1 else 0].events.append(event)
    for chunk in chunks:
        chunk.high = high
    return [(chunk.shard, chunk) for chunk in chunks]
