"""Property tests: valid events round-trip, and no input makes decoding raise."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from rttm.core.contracts import Message
from rttm.core.decode import Accepted, Rejected, decode_message
from rttm.core.registry import TOPICS
from tests.samples import SAMPLE_MESSAGES, encode
from tests.strategies import JSON_VALUES, events

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
