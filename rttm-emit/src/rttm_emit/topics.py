"""The ``rttm.*`` topics as a producer sees them: name, contract and message-key rule.

The one place a topic name or key field is written: RTTM's server builds its registry
(consumer groups, tables, columns) on these :class:`Topic` values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter

from rttm_emit.contracts import DlqEvent, ErrorEvent, LogEvent, Message, QueueMetrics, TradeEvent


@dataclass(frozen=True)
class Topic:
    """One ``rttm.*`` topic: its contract and how its messages are keyed.

    Attributes:
        name: Kafka topic name.
        struct: msgspec Struct every message must decode into.
        key_fields: payload fields joined with ``-`` to form the message key; the key picks
            the partition, so one trade's (or one service's) events stay in order.
    """

    name: str
    struct: type[Message]
    key_fields: tuple[str, ...]

    @cached_property
    def key_of(self) -> Callable[[Message], str]:
        """The message key of an event (e.g. ``trade-input-2``)."""
        if len(self.key_fields) == 1:  # hot path: a plain attribute read
            return attrgetter(self.key_fields[0])
        fields = self.key_fields
        return lambda event: "-".join(str(getattr(event, name)) for name in fields)


TRADE_EVENTS = Topic("rttm.trade.events", TradeEvent, ("trade_id",))
QUEUE_METRICS = Topic("rttm.queue.metrics", QueueMetrics, ("topic_name", "partition"))
DLQ_EVENTS = Topic("rttm.dlq.events", DlqEvent, ("trade_id",))
ERROR_EVENTS = Topic("rttm.error.events", ErrorEvent, ("service_name",))
LOG_EVENTS = Topic("rttm.log.events", LogEvent, ("service_name",))

#: Every topic, in the order RTTM lists them.
TOPICS: tuple[Topic, ...] = (TRADE_EVENTS, QUEUE_METRICS, DLQ_EVENTS, ERROR_EVENTS, LOG_EVENTS)
BY_NAME: dict[str, Topic] = {topic.name: topic for topic in TOPICS}
#: The topic of each contract Struct (what the emitter publishes an event to).
BY_STRUCT: dict[type[Message], Topic] = {topic.struct: topic for topic in TOPICS}
