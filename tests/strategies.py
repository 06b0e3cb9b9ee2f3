"""Hypothesis strategies of the property tests: contract events, arbitrary JSON values."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import msgspec.inspect as mi
from hypothesis import strategies as st

from rttm.core.contracts import Message

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


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
