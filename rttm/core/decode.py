"""Turn one raw Kafka message into a typed, dedupe-keyed event or a reject.

Errors are data: :func:`decode_message` never raises for any key or value bytes; a message
that breaks its contract comes back as a :class:`Rejected` whose reason names the topic,
partition, offset and field, so the ingestion can store it instead of crashing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from rttm.core.contracts import Message
from rttm.core.registry import BY_NAME, TopicSpec


class Accepted(msgspec.Struct, frozen=True, gc=False):
    """A message that satisfied its contract.

    Attributes:
        spec: registry entry of the topic it came from.
        event: the decoded contract Struct.
        dedupe_key: the row's idempotency key (docs/design.md §3.1), see :func:`dedupe_key`.
        partition: Kafka partition of the ``rttm.*`` message.
        offset: Kafka offset of the ``rttm.*`` message.
    """

    spec: TopicSpec
    event: Message
    dedupe_key: str
    partition: int
    offset: int


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """A message that broke its contract, kept whole with the reason."""

    topic: str
    partition: int
    offset: int
    dedupe_key: str
    key: bytes | None
    value: bytes | None
    reason: str


Decoded = Accepted | Rejected


def fallback_key(topic: str, partition: int, offset: int, timestamp_ms: int | None) -> str:
    """Dedupe key of a message without ``event_id``: its Kafka coordinates and timestamp.

    The timestamp tells a new message at a reused offset (topic recreated, memory broker
    restarted) from a replay of the same message, which carries the same timestamp.
    """
    return f"k:{topic}/{partition}/{offset}/{'-' if timestamp_ms is None else timestamp_ms}"


def dedupe_key(
    event_id: str | None, topic: str, partition: int, offset: int, timestamp_ms: int | None
) -> str:
    """The row's idempotency key: ``event_id`` when given, else :func:`fallback_key`.

    The one rule, used by :func:`decode_message` and the batched hot path. Prefixes keep
    the two spaces apart, so no ``event_id`` can collide with a fallback key.
    """
    if event_id is not None:
        return "e:" + event_id
    return fallback_key(topic, partition, offset, timestamp_ms)


def refusal_reason(topic: str, partition: int, offset: int, detail: str) -> str:
    """A reject's reason: where the message is, then what is wrong with it."""
    return f"{topic}[{partition}]@{offset}: {detail}"


def rejected(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    detail: str,
) -> Rejected:
    """The :class:`Rejected` of a message refused for ``detail``, kept whole."""
    return Rejected(
        topic=topic,
        partition=partition,
        offset=offset,
        dedupe_key=fallback_key(topic, partition, offset, timestamp_ms),
        key=key,
        value=value,
        reason=refusal_reason(topic, partition, offset, detail),
    )


def empty_value(value: bytes | None) -> str:
    """Why an empty ``value`` is refused."""
    return "empty value" if value == b"" else "null value (tombstone)"


def _fits_utc(moment: datetime) -> bool:
    """Whether ``moment`` is still a valid datetime in UTC (years 1 to 9999)."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _field_with_nul(event: Message) -> str | None:
    """The first string field of ``event`` holding a NUL, which PostgreSQL text refuses."""
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if isinstance(value, str) and "\x00" in value:
            return name
    return None


class Refusal(Exception):
    """Why a message value breaks its contract (internal to the decode paths)."""


def validated(spec: TopicSpec, value: bytes) -> Message:
    """The contract Struct of a non-empty ``value``; raises :class:`Refusal` with the reason.

    The one home of the validation rules, shared by :func:`decode_message` and the batched
    hot path (``rttm.ingest.chunks``), which calls it directly to skip per-message objects.
    """
    try:
        event = spec.decoder.decode(value)
        # msgspec checks UTF-8 only in the fields it decodes, not in skipped unknown
        # ones; JSON between systems must be UTF-8 throughout (RFC 8259 §8.1).
        if not value.isascii():  # ASCII is UTF-8: skip the costly check for most messages
            value.decode("utf-8")
    except msgspec.ValidationError as exc:
        raise Refusal(str(exc)) from None
    except UnicodeDecodeError as exc:
        msg = f"JSON is malformed: invalid UTF-8 at byte {exc.start}"
        raise Refusal(msg) from None
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        text = str(exc)
        detail = text if text.startswith("JSON is malformed") else f"JSON is malformed: {text}"
        raise Refusal(detail) from None
    moment = getattr(event, spec.time_field)
    if moment.year in (1, 9999) and not _fits_utc(moment):
        msg = f"timestamp out of range in UTC - at `$.{spec.time_field}`"
        raise Refusal(msg)
    # A NUL can only reach a string as the JSON escape \u0000: a byte search (memchr for the
    # backslash first, which most messages lack), then find the field (the escape may sit
    # in an ignored field).
    if b"\\" in value and b"\\u0000" in value and (name := _field_with_nul(event)):
        msg = f"NUL character (\\u0000) cannot be stored in text - at `$.{name}`"
        raise Refusal(msg)
    return event


def decode_message(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int,
    offset: int,
    timestamp_ms: int | None = None,
) -> Decoded:
    """Decode and validate one ``rttm.*`` message against its topic's contract.

    Args:
        topic: the Kafka topic the message was read from.
        key: raw message key (kept for rejects; the key used downstream comes from the payload).
        value: raw message value, UTF-8 JSON.
        partition: Kafka partition.
        offset: Kafka offset.
        timestamp_ms: Kafka message timestamp in ms since the epoch, ``None`` if unavailable.

    Returns:
        :class:`Accepted` with the typed event, or :class:`Rejected` with the reason.
    """
    spec = BY_NAME.get(topic)
    if spec is None:
        detail = "unknown topic, not in the rttm topic registry"
    elif not value:
        detail = empty_value(value)
    else:
        try:
            event = validated(spec, value)
        except Refusal as refusal:
            detail = str(refusal)
        else:
            key_of_row = dedupe_key(event.event_id, topic, partition, offset, timestamp_ms)
            return Accepted(spec, event, key_of_row, partition, offset)
    return rejected(topic, key, value, partition, offset, timestamp_ms, detail)
