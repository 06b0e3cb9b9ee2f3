"""Every contract rule of docs/design.md §1.2, through the one decode function of the ingestion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from rttm.core.contracts import ID_MAX_CHARS, INT32_MAX, INT64_MAX, TEXT_MAX_CHARS, TradeEvent
from rttm.core.decode import Accepted, Rejected, decode_message, fallback_key
from rttm.core.registry import BY_NAME, TOPICS
from tests.samples import OPTIONAL_FIELDS, SAMPLE_MESSAGES, encode

PARTITION, OFFSET, TIMESTAMP_MS = 3, 41, 1_765_969_549_000


def decode(topic: str, value: bytes | None, key: bytes | None = b"k") -> Accepted | Rejected:
    return decode_message(topic, key, value, PARTITION, OFFSET, TIMESTAMP_MS)


def rejected(topic: str, payload: dict[str, Any] | bytes | None) -> str:
    """Decode ``payload``, assert it was rejected, return the reason without its prefix."""
    value = payload if payload is None or isinstance(payload, bytes) else encode(payload)
    result = decode(topic, value)
    assert isinstance(result, Rejected), f"accepted: {result!r}"
    prefix = f"{topic}[{PARTITION}]@{OFFSET}: "
    assert result.reason.startswith(prefix)
    return result.reason.removeprefix(prefix)


def with_field(topic: str, field: str, value: Any) -> dict[str, Any]:
    return {**SAMPLE_MESSAGES[topic], field: value}


def without(topic: str, field: str) -> dict[str, Any]:
    return {k: v for k, v in SAMPLE_MESSAGES[topic].items() if k != field}


def fields(kind: type, *, required_only: bool = False) -> list[tuple[str, str]]:
    """(topic, field) pairs of the sample messages whose values are of ``kind``."""
    return [
        (topic, name)
        for topic, example in SAMPLE_MESSAGES.items()
        for name, value in example.items()
        if type(value) is kind
        and not name.endswith("_time")
        and not (required_only and name in OPTIONAL_FIELDS[topic])
    ]


TIME_FIELDS = [(spec.name, spec.time_field) for spec in TOPICS]
REQUIRED = [
    (topic, name)
    for topic, example in SAMPLE_MESSAGES.items()
    for name in example
    if name not in OPTIONAL_FIELDS[topic]
]
OPTIONAL = [(topic, name) for topic, names in OPTIONAL_FIELDS.items() for name in sorted(names)]


@pytest.mark.parametrize("topic", list(SAMPLE_MESSAGES))
def test_design_example_is_accepted_with_every_field(topic: str) -> None:
    result = decode(topic, encode(SAMPLE_MESSAGES[topic]))
    assert isinstance(result, Accepted)
    assert type(result.event) is BY_NAME[topic].struct
    for name, value in SAMPLE_MESSAGES[topic].items():
        got = getattr(result.event, name)
        if name.endswith("_time"):
            assert got == datetime.fromisoformat(value)
            assert got.tzinfo is not None
        else:
            assert got == value
    assert (result.partition, result.offset) == (PARTITION, OFFSET)


def test_trade_event_fields_keep_types() -> None:
    result = decode("rttm.trade.events", encode(SAMPLE_MESSAGES["rttm.trade.events"]))
    assert isinstance(result, Accepted)
    assert isinstance(result.event, TradeEvent)
    assert result.event.partition == 2
    assert result.event.offset == 102345
    assert result.event.event_time == datetime(2025, 12, 17, 11, 5, 49, tzinfo=UTC)


@pytest.mark.parametrize(("topic", "field"), REQUIRED)
def test_each_required_field_missing_is_rejected(topic: str, field: str) -> None:
    assert f"missing required field `{field}`" in rejected(topic, without(topic, field))


@pytest.mark.parametrize(("topic", "field"), REQUIRED)
def test_each_required_field_null_is_rejected(topic: str, field: str) -> None:
    assert f"`$.{field}`" in rejected(topic, with_field(topic, field, None))


@pytest.mark.parametrize(("topic", "field"), OPTIONAL)
def test_each_optional_field_may_be_absent_or_null(topic: str, field: str) -> None:
    for payload in (without(topic, field), with_field(topic, field, None)):
        result = decode(topic, encode(payload))
        assert isinstance(result, Accepted), result
        assert getattr(result.event, field) is None


@pytest.mark.parametrize(("topic", "field"), fields(str))
def test_each_string_field_of_wrong_type_is_rejected(topic: str, field: str) -> None:
    reason = rejected(topic, with_field(topic, field, 123))
    assert reason == f"Expected `str | null`, got `int` - at `$.{field}`" or (
        reason == f"Expected `str`, got `int` - at `$.{field}`"
    )


@pytest.mark.parametrize(("topic", "field"), fields(str))
def test_each_string_field_empty_is_rejected(topic: str, field: str) -> None:
    assert f"of length >= 1 - at `$.{field}`" in rejected(topic, with_field(topic, field, ""))


@pytest.mark.parametrize(("topic", "field"), fields(int))
@pytest.mark.parametrize("wrong", ["7", 7.0, True, [7], {"v": 7}])
def test_each_integer_field_of_wrong_type_is_rejected_not_coerced(
    topic: str, field: str, wrong: object
) -> None:
    assert f"- at `$.{field}`" in rejected(topic, with_field(topic, field, wrong))


@pytest.mark.parametrize(("topic", "field"), fields(int))
def test_each_integer_field_negative_is_rejected(topic: str, field: str) -> None:
    assert f"Expected `int` >= 0 - at `$.{field}`" in rejected(topic, with_field(topic, field, -1))


@pytest.mark.parametrize(("topic", "field"), fields(int))
def test_each_integer_field_zero_is_accepted(topic: str, field: str) -> None:
    assert isinstance(decode(topic, encode(with_field(topic, field, 0))), Accepted)


@pytest.mark.parametrize(("topic", "field"), fields(int))
def test_integers_beyond_postgres_range_are_rejected(topic: str, field: str) -> None:
    limit = INT32_MAX if field == "partition" else INT64_MAX
    assert isinstance(decode(topic, encode(with_field(topic, field, limit))), Accepted)
    assert f"<= {limit} - at `$.{field}`" in rejected(topic, with_field(topic, field, limit + 1))
    assert f"- at `$.{field}`" in rejected(topic, with_field(topic, field, 10**30))


@pytest.mark.parametrize(("topic", "field"), TIME_FIELDS)
def test_naive_timestamp_is_rejected(topic: str, field: str) -> None:
    reason = rejected(topic, with_field(topic, field, "2025-12-17T11:05:49"))
    assert reason == f"Expected `datetime` with a timezone component - at `$.{field}`"


@pytest.mark.parametrize(("topic", "field"), TIME_FIELDS)
@pytest.mark.parametrize("wrong", ["2025-12-17", "yesterday", "2025-13-40T00:00:00Z", 1765969549])
def test_malformed_timestamp_is_rejected(topic: str, field: str, wrong: object) -> None:
    assert f"- at `$.{field}`" in rejected(topic, with_field(topic, field, wrong))


@pytest.mark.parametrize(("topic", "field"), TIME_FIELDS)
def test_timestamp_with_offset_is_accepted_as_the_same_instant(topic: str, field: str) -> None:
    result = decode(topic, encode(with_field(topic, field, "2025-12-17T16:35:49+05:30")))
    assert isinstance(result, Accepted)
    moment = getattr(result.event, field)
    assert moment.utcoffset() == timedelta(hours=5, minutes=30)
    assert moment == datetime(2025, 12, 17, 11, 5, 49, tzinfo=timezone.utc)  # noqa: UP017


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"{not json", "JSON is malformed"),
        (b'{"trade_id": "T1",', "JSON is malformed: Input data was truncated"),
        (b"\xc3\x28", "JSON is malformed"),
        (b"", "empty value"),
        (None, "null value (tombstone)"),
        (b"[1, 2]", "Expected `object`, got `array`"),
        (b'"T123"', "Expected `object`, got `str`"),
        (b"null", "Expected `object`, got `null`"),
    ],
)
@pytest.mark.parametrize("topic", list(SAMPLE_MESSAGES))
def test_unusable_values_are_rejected(topic: str, value: bytes | None, expected: str) -> None:
    assert expected in rejected(topic, value)


@pytest.mark.parametrize("topic", list(SAMPLE_MESSAGES))
def test_invalid_utf8_anywhere_is_rejected(topic: str) -> None:
    in_known_field = encode(with_field(topic, "service_name", "SVCX")).replace(b"SVCX", b"S\xffX")
    assert "JSON is malformed" in rejected(topic, in_known_field)
    in_unknown_field = encode({**SAMPLE_MESSAGES[topic], "note": "NOTE"}).replace(b"NOTE", b"\xfe")
    assert "JSON is malformed" in rejected(topic, in_unknown_field)


@pytest.mark.parametrize("topic", list(SAMPLE_MESSAGES))
def test_json_nested_5000_deep_is_rejected_not_raised(topic: str) -> None:
    deep = b'{"a":' * 5_000 + b"1" + b"}" * 5_000  # beyond msgspec's depth limit
    too_deep = "JSON is malformed: maximum recursion depth exceeded while deserializing an object"
    assert rejected(topic, deep) == too_deep
    in_unknown_field = encode({**SAMPLE_MESSAGES[topic], "note": "DEEP"}).replace(b'"DEEP"', deep)
    assert rejected(topic, in_unknown_field) == too_deep
    assert rejected(topic, b"[" * 5_000 + b"]" * 5_000) == "Expected `object`, got `array`"


def test_a_megabyte_of_text_is_accepted_and_beyond_the_cap_is_rejected_naming_it() -> None:
    megabyte = "x" * 1_048_576  # more than a default Kafka message holds
    result = decode("rttm.log.events", encode(with_field("rttm.log.events", "message", megabyte)))
    assert isinstance(result, Accepted)
    assert result.event.message == megabyte  # type: ignore[attr-defined]
    beyond = "x" * (TEXT_MAX_CHARS + 1)
    reason = rejected("rttm.log.events", with_field("rttm.log.events", "message", beyond))
    assert reason == f"Expected `str` of length <= {TEXT_MAX_CHARS} - at `$.message`"
    reason = rejected("rttm.trade.events", with_field("rttm.trade.events", "trade_id", megabyte))
    assert reason == f"Expected `str` of length <= {ID_MAX_CHARS} - at `$.trade_id`"


def test_text_and_ids_at_their_limits_are_accepted() -> None:
    payload = {
        **SAMPLE_MESSAGES["rttm.log.events"],
        "message": "m" * TEXT_MAX_CHARS,
        "service_name": "s" * ID_MAX_CHARS,
    }
    result = decode("rttm.log.events", encode(payload))
    assert isinstance(result, Accepted)
    assert len(result.event.message) == TEXT_MAX_CHARS  # type: ignore[attr-defined]


@pytest.mark.parametrize("topic", list(SAMPLE_MESSAGES))
def test_unknown_extra_fields_are_ignored(topic: str) -> None:
    payload = {**SAMPLE_MESSAGES[topic], "extra": {"nested": [1, 2]}, "zz_version": 3}
    result = decode(topic, encode(payload))
    assert isinstance(result, Accepted)
    assert not hasattr(result.event, "extra")


@pytest.mark.parametrize("topic", list(SAMPLE_MESSAGES))
def test_event_id_is_optional_and_becomes_the_dedupe_key(topic: str) -> None:
    plain = decode(topic, encode(SAMPLE_MESSAGES[topic]))
    assert isinstance(plain, Accepted)
    assert plain.event.event_id is None
    assert plain.dedupe_key == fallback_key(topic, PARTITION, OFFSET, TIMESTAMP_MS)
    with_id = decode(topic, encode({**SAMPLE_MESSAGES[topic], "event_id": "0190-abc"}))
    assert isinstance(with_id, Accepted)
    assert with_id.dedupe_key == "e:0190-abc"
    assert "`$.event_id`" in rejected(topic, {**SAMPLE_MESSAGES[topic], "event_id": ""})
    assert "`$.event_id`" in rejected(topic, {**SAMPLE_MESSAGES[topic], "event_id": 7})


def test_fallback_key_tells_a_reused_offset_from_a_replay() -> None:
    value = encode(SAMPLE_MESSAGES["rttm.trade.events"])
    first = decode_message("rttm.trade.events", None, value, 0, 5, 1000)
    replay = decode_message("rttm.trade.events", None, value, 0, 5, 1000)
    reused = decode_message("rttm.trade.events", None, value, 0, 5, 2000)
    other_topic = decode_message("rttm.dlq.events", None, value, 0, 5, 1000)
    assert isinstance(first, Accepted)
    assert isinstance(replay, Accepted)
    assert isinstance(reused, Accepted)
    assert first.dedupe_key == replay.dedupe_key
    assert first.dedupe_key != reused.dedupe_key
    assert other_topic.dedupe_key != first.dedupe_key
    assert not first.dedupe_key.startswith("e:")


def test_reject_keeps_raw_key_and_value_and_names_where() -> None:
    raw = encode({**SAMPLE_MESSAGES["rttm.trade.events"], "partition": -5})
    result = decode_message("rttm.trade.events", b"T123", raw, 4, 1041, 99)
    assert result == Rejected(
        topic="rttm.trade.events",
        partition=4,
        offset=1041,
        dedupe_key=fallback_key("rttm.trade.events", 4, 1041, 99),
        key=b"T123",
        value=raw,
        reason="rttm.trade.events[4]@1041: Expected `int` >= 0 - at `$.partition`",
    )


def test_unknown_topic_is_rejected_not_raised() -> None:
    result = decode_message("business.topic", None, b"{}", 0, 0, None)
    assert isinstance(result, Rejected)
    assert result.reason == "business.topic[0]@0: unknown topic, not in the rttm topic registry"
    assert result.dedupe_key == "k:business.topic/0/0/-"


@pytest.mark.parametrize(("topic", "field"), fields(str))
def test_nul_character_in_any_text_field_is_rejected(topic: str, field: str) -> None:
    reason = rejected(topic, with_field(topic, field, "before\x00after"))
    assert reason == f"NUL character (\\u0000) cannot be stored in text - at `$.{field}`"


def test_nul_outside_stored_fields_or_as_literal_text_is_accepted() -> None:
    topic = "rttm.log.events"
    ignored = decode(topic, encode({**SAMPLE_MESSAGES[topic], "debug": "a\x00b"}))
    assert isinstance(ignored, Accepted)
    literal = decode(topic, encode(with_field(topic, "message", "path C:\\u0000x")))
    assert isinstance(literal, Accepted)
    assert literal.event.message == "path C:\\u0000x"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("topic", "field"), TIME_FIELDS)
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00"])
def test_timestamps_that_overflow_in_utc_are_rejected(topic: str, field: str, moment: str) -> None:
    reason = rejected(topic, with_field(topic, field, moment))
    assert reason == f"timestamp out of range in UTC - at `$.{field}`"


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_extreme_utc_timestamps_are_accepted(moment: str) -> None:
    payload = with_field("rttm.dlq.events", "event_time", moment)
    assert isinstance(decode("rttm.dlq.events", encode(payload)), Accepted)
