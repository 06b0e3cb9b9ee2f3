"""Shards: how both flows spread keys over their stateful steps, and what they call them."""

from __future__ import annotations

import zlib
from collections.abc import Iterable


def shard_keys(shards: int) -> tuple[str, ...]:
    """The item keys (and sink partition names) of ``shards`` shards: ``shard-0`` and on."""
    return tuple(f"shard-{n}" for n in range(shards))


def shards_among(keys: Iterable[str]) -> int:
    """How many shards ``keys`` (state keys of any steps) imply: the highest ``shard-n``, + 1."""
    numbers = [int(key[6:]) for key in keys if key.startswith("shard-") and key[6:].isdigit()]
    return max(numbers, default=-1) + 1


def shard_of(key: str, shards: int) -> int:
    """The shard of a key (a trade, a service, a queue partition), the same in every process."""
    return zlib.crc32(key.encode()) % shards
