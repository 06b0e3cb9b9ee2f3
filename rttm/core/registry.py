"""The topic registry: each ``rttm.*`` topic with what the server adds to it.

Topic names, contracts and key rules come from the producer package
(:mod:`rttm_emit.topics`, their one definition); here each gets its consumer group, table,
columns and decoder. Everything else (decoding, keying, topic creation, table and column
names, consumer groups) reads :data:`TOPICS`; no other module spells a topic or table name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import msgspec
import msgspec.inspect as mi

from rttm_emit import topics as emit_topics
from rttm_emit.contracts import INT32_MAX, Message
from rttm_emit.topics import Topic

#: Payload fields renamed in table columns: business-queue coordinates get a prefix because
#: ``offset`` is reserved in SQL and ``partition`` would be confused with the Kafka one.
COLUMN_RENAMES: dict[str, str] = {"partition": "queue_partition", "offset": "queue_offset"}

#: Columns every ingested table carries after the payload: the dedupe key and where the row
#: came from (docs/design.md §4.1). ``ingested_at`` is filled by the database.
PROVENANCE_COLUMNS: tuple[str, ...] = ("dedupe_key", "kafka_partition", "kafka_offset")
PROVENANCE_TYPES: tuple[str, ...] = ("text", "int4", "int8")
INGESTED_AT_COLUMN = "ingested_at"

#: Where malformed messages go, with the raw bytes and the reason.
REJECTS_TABLE = "rttm_ingest_rejects"
REJECTS_COLUMNS: tuple[str, ...] = (
    "topic",
    "kafka_partition",
    "kafka_offset",
    "dedupe_key",
    "raw_key",
    "raw_value",
    "reason",
)
REJECTS_TYPES: tuple[str, ...] = ("text", "int4", "int8", "text", "bytea", "bytea", "text")


def _pg_type(info: mi.Type) -> str:
    """PostgreSQL type of a contract field (for binary COPY), from its msgspec type."""
    if isinstance(info, mi.UnionType):  # optional: X | None
        (info,) = (t for t in info.types if not isinstance(t, mi.NoneType))
    if isinstance(info, mi.StrType):
        return "text"
    if isinstance(info, mi.IntType):
        return "int4" if info.le is not None and info.le <= INT32_MAX else "int8"
    if isinstance(info, mi.DateTimeType):
        return "timestamptz"
    msg = f"no PostgreSQL type for {info!r}"
    raise TypeError(msg)


@dataclass(frozen=True)
class TopicSpec(Topic):
    """One ``rttm.*`` topic: the package's name, contract and key rule, then storage.

    Attributes:
        consumer_group: group RTTM commits its written offsets to.
        table: PostgreSQL table the messages land in.
        time_field: payload field holding the event time (partitioning, ordering).
    """

    consumer_group: str
    table: str
    time_field: str = "event_time"
    decoder: msgspec.json.Decoder[Message] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per topic: constructing a Decoder is far costlier than using one.
        object.__setattr__(self, "decoder", msgspec.json.Decoder(self.struct))

    @classmethod
    def of(
        cls, topic: Topic, *, consumer_group: str, table: str, time_field: str = "event_time"
    ) -> TopicSpec:
        """``topic`` of :mod:`rttm_emit.topics`, stored in ``table`` by ``consumer_group``."""
        return cls(
            name=topic.name,
            struct=topic.struct,
            key_fields=topic.key_fields,
            consumer_group=consumer_group,
            table=table,
            time_field=time_field,
        )

    @cached_property
    def payload_fields(self) -> tuple[str, ...]:
        """Struct field names, in contract order."""
        return self.struct.__struct_fields__

    @cached_property
    def payload_columns(self) -> tuple[str, ...]:
        """Table column names of the payload fields, in contract order."""
        return tuple(COLUMN_RENAMES.get(name, name) for name in self.payload_fields)

    @cached_property
    def column_types(self) -> tuple[str, ...]:
        """PostgreSQL types of :attr:`columns`, derived from the contract."""
        info = mi.type_info(self.struct)
        assert isinstance(info, mi.StructType)  # noqa: S101 - a Struct by construction
        return tuple(_pg_type(f.type) for f in info.fields) + PROVENANCE_TYPES

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """Every column the ingestion writes: payload, then provenance."""
        return self.payload_columns + PROVENANCE_COLUMNS


#: In the package's order (a test checks that every topic of the package is here).
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec.of(
        emit_topics.TRADE_EVENTS,
        consumer_group="rttm-trade-consumer",
        table="rttm_trade_events",
    ),
    TopicSpec.of(
        emit_topics.QUEUE_METRICS,
        consumer_group="rttm-queue-consumer",
        table="rttm_queue_metrics",
        time_field="snapshot_time",
    ),
    TopicSpec.of(
        emit_topics.DLQ_EVENTS,
        consumer_group="rttm-dlq-consumer",
        table="rttm_dlq_events",
    ),
    TopicSpec.of(
        emit_topics.ERROR_EVENTS,
        consumer_group="rttm-error-consumer",
        table="rttm_error_events",
    ),
    TopicSpec.of(
        emit_topics.LOG_EVENTS,
        consumer_group="rttm-log-consumer",
        table="rttm_parsed_logs",
    ),
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}

#: Where the metrics engine publishes alert transitions (JSON, keyed by rule name).
ALERT_EVENTS_TOPIC = "rttm.alert.events"
#: Topics RTTM writes to; ``rttm topics create`` creates them beside the ingested ones.
OUTPUT_TOPICS: tuple[str, ...] = (ALERT_EVENTS_TOPIC,)


class UnknownTopicError(ValueError):
    """A topic name that is not one of the ``rttm.*`` topics."""


def spec_for(topic: str) -> TopicSpec:
    """The registry entry of ``topic``; raises :class:`UnknownTopicError` naming the known ones."""
    try:
        return BY_NAME[topic]
    except KeyError:
        msg = f"unknown topic {topic!r}; known topics: {', '.join(BY_NAME)}"
        raise UnknownTopicError(msg) from None


def all_tables() -> tuple[str, ...]:
    """Every table the ingestion writes to, rejects last."""
    return (*(spec.table for spec in TOPICS), REJECTS_TABLE)
