"""Property tests: valid events round-trip, and no input makes decoding raise."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import given, settings
from hypothesis import strategies as st

from rttm.contracts import Message
from rttm.decode import Accepted, Rejected, decode_message
from rttm.registry import TOPICS
from tests.samples import SAMPLE_MESSAGES, encode

# RFC 3339 offsets have minute precision; msgspec encodes them so.
OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def strategy_for(info: mi.Type) -> st.SearchStrategy[Any]:
    """Values satisfying a msgspec type, constraints included (derived, never hand-listed)."""
    if isinstance(info, mi.StrType):
        # NUL is the one character the contract refuses in text (PostgreSQL cannot store it).
        return st.text(
            st.characters(codec="utf-8", exclude_characters="\x00"),
            min_size=info.min_length or 0,
            max_size=min(info.max_length or 40, 40),
        )
    if isinstance(info, mi.IntType):
        return st.integers(min_value=info.ge, max_value=info.le)
    if isinstance(info, mi.DateTimeType):
        return st.datetimes(timezones=OFFSETS)
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.UnionType):
        return st.one_of(*(strategy_for(t) for t in info.types))
    msg = f"no strategy for {info!r}"
    raise TypeError(msg)


def events(struct: type[Message]) -> st.SearchStrategy[Message]:
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    return st.fixed_dictionaries({f.name: strategy_for(f.type) for f in info.fields}).map(
        lambda kwargs: struct(**kwargs)
    )


VALID = st.one_of(*(st.tuples(st.just(spec), events(spec.struct)) for spec in TOPICS))


@given(VALID)
def test_every_valid_event_round_trips(pair: tuple[Any, Message]) -> None:
    spec, event = pair
    result = decode_message(spec.name, b"key", msgspec.json.encode(event), 1, 2, 3)
    assert isinstance(result, Accepted), result
    assert result.event == event
    if event.event_id is not None:
        assert result.dedupe_key == "e:" + event.event_id


@settings(max_examples=2000)
@given(
    topic=st.sampled_from([spec.name for spec in TOPICS] + ["not.a.topic"]),
    key=st.none() | st.binary(max_size=16),
    value=st.none() | st.binary(max_size=512),
    partition=st.integers(min_value=0, max_value=2**31 - 1),
    offset=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_no_byte_string_makes_the_decoder_raise(
    topic: str, key: bytes | None, value: bytes | None, partition: int, offset: int
) -> None:
    result = decode_message(topic, key, value, partition, offset, None)
    assert isinstance(result, Accepted | Rejected)
    if isinstance(result, Rejected):
        assert result.reason.startswith(f"{topic}[{partition}]@{offset}: ")
        assert (result.key, result.value) == (key, value)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000)
@given(
    topic=st.sampled_from(list(SAMPLE_MESSAGES)),
    field=st.text(min_size=1, max_size=20),
    replacement=JSON_VALUES,
    data=st.data(),
)
def test_mutated_valid_messages_decode_or_reject(
    topic: str, field: str, replacement: object, data: st.DataObject
) -> None:
    payload = dict(SAMPLE_MESSAGES[topic])
    payload[data.draw(st.sampled_from([*payload, field]))] = replacement
    raw = encode(payload)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    for value in (raw, raw[:cut], json.dumps([payload]).encode()):
        result = decode_message(topic, None, value, 0, 0, 0)
        assert isinstance(result, Accepted | Rejected)
