"""The ingestion's row: what one message becomes in its table, and where each part sits.

A row is a plain tuple, in the table's column order (binary COPY writes tuples, a million a
minute): an accepted event's payload fields in contract order, then the provenance columns
(dedupe key, Kafka partition, Kafka offset); a rejected message's row has the rejects
table's columns. This module is the one place that knows those positions: the batch
decoder builds rows here, the dedupe step reads their keys here, the writer their Kafka
coordinates and event times.
"""

from __future__ import annotations

from dataclasses import dataclass

from msgspec.structs import astuple

from rttm.core.contracts import Message
from rttm.core.decode import Accepted, Decoded, Rejected
from rttm.core.registry import REJECTS_COLUMNS, REJECTS_TABLE, REJECTS_TYPES, TOPICS

Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """The columns of one table's rows, and the positions the ingestion reads."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    dedupe: int  # the dedupe key
    partition: int  # the Kafka partition of the rttm.* message
    offset: int  # its Kafka offset

    @classmethod
    def of(cls, table: str, columns: tuple[str, ...], types: tuple[str, ...]) -> Layout:
        """The layout of ``columns``, which hold the dedupe key and Kafka coordinates."""
        return cls(
            table,
            columns,
            types,
            columns.index("dedupe_key"),
            columns.index("kafka_partition"),
            columns.index("kafka_offset"),
        )


#: Every table the ingestion writes, by name: each topic's, then the rejects.
LAYOUTS: dict[str, Layout] = {
    **{spec.table: Layout.of(spec.table, spec.columns, spec.column_types) for spec in TOPICS},
    REJECTS_TABLE: Layout.of(REJECTS_TABLE, REJECTS_COLUMNS, REJECTS_TYPES),
}
#: The topic whose events each event table holds.
TOPIC_OF_TABLE: dict[str, str] = {spec.table: spec.name for spec in TOPICS}
#: Where each event table's rows hold the event time (the trade events' day partition).
EVENT_TIME: dict[str, int] = {
    spec.table: spec.payload_fields.index(spec.time_field) for spec in TOPICS
}


def event_row(event: Message, dedupe_key: str, partition: int, offset: int) -> Row:
    """The row of an accepted event: its payload, then where it came from."""
    return (*astuple(event), dedupe_key, partition, offset)


def reject_row(rejected: Rejected) -> Row:
    """The rejects table's row of a refused message, raw bytes and reason included."""
    return (
        rejected.topic,
        rejected.partition,
        rejected.offset,
        rejected.dedupe_key,
        rejected.key,
        rejected.value,
        rejected.reason,
    )


def table_row(result: Decoded) -> tuple[str, Row]:
    """The table and row a decoded message becomes."""
    if isinstance(result, Accepted):
        row = event_row(result.event, result.dedupe_key, result.partition, result.offset)
        return result.spec.table, row
    return REJECTS_TABLE, reject_row(result)
