"""The five message contracts of the ``rttm.*`` topics, as msgspec Structs.

The Structs are the single definition of every payload: the emitter, the JSON Schemas and
RTTM's decoders and table columns are all derived from them. RTTM validates strictly (a
message that breaks a rule is rejected, never coerced) and ignores unknown extra fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypeAlias

import msgspec

#: Identifiers (trade ids, service, queue and event-type names) are indexed and used as
#: keys, so they are bounded well below PostgreSQL's btree row limit (≈ 2.7 kB).
ID_MAX_CHARS = 256
#: Free text (messages, reasons, error messages) carries stack traces, so it is stored whole
#: up to far more than a Kafka message holds by default (1 MB): 16 Mi characters. The cap
#: only guards against a broker configured for huge messages; a longer text is rejected,
#: and the whole message kept in the rejects table.
TEXT_MAX_CHARS = 16 * 1024 * 1024
#: PostgreSQL ``bigint`` and ``integer`` ceilings: a value the column cannot hold is invalid.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

Id: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_CHARS)]
Text: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=TEXT_MAX_CHARS)]
Timestamp: TypeAlias = Annotated[datetime, msgspec.Meta(tz=True)]
Offset: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Partition: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]


class Message(msgspec.Struct, kw_only=True, frozen=True, gc=False, omit_defaults=True):
    """Base of every contract: the optional producer-assigned, unique ``event_id``."""

    event_id: Id | None = None


class TradeEvent(Message, kw_only=True, frozen=True, gc=False):
    """One step of one trade through one service (``rttm.trade.events``)."""

    trade_id: Id
    service_name: Id
    event_type: Id
    event_status: Id
    source_queue: Id | None = None
    target_queue: Id | None = None
    topic_name: Id | None = None
    partition: Partition | None = None
    offset: Offset | None = None
    event_time: Timestamp
    message: Text | None = None


class QueueMetrics(Message, kw_only=True, frozen=True, gc=False):
    """A consumer's position on one business-queue partition (``rttm.queue.metrics``)."""

    service_name: Id
    topic_name: Id
    partition: Partition
    produced_offset: Offset
    consumed_offset: Offset
    snapshot_time: Timestamp


class DlqEvent(Message, kw_only=True, frozen=True, gc=False):
    """A trade sent to a dead-letter queue (``rttm.dlq.events``)."""

    trade_id: Id
    service_name: Id
    topic_name: Id
    reason: Text
    event_time: Timestamp


class ErrorEvent(Message, kw_only=True, frozen=True, gc=False):
    """An error a service met, about a trade or not (``rttm.error.events``)."""

    trade_id: Id | None = None
    service_name: Id
    error_type: Id
    error_message: Text
    event_time: Timestamp


class LogEvent(Message, kw_only=True, frozen=True, gc=False):
    """A parsed WARN/ERROR-style log line of a service (``rttm.log.events``)."""

    service_name: Id
    log_level: Id
    log_category: Id
    trade_id: Id | None = None
    message: Text
    event_time: Timestamp


Contract: TypeAlias = TradeEvent | QueueMetrics | DlqEvent | ErrorEvent | LogEvent
