"""Time-ordered event ids (UUIDv7, RFC 9562), fast enough for the producer hot path."""

from __future__ import annotations

import os
import random
import threading
import time

_LOCK = threading.Lock()
_STATE = {"ms": 0, "counter": 0}
_RANDOM = random.Random()  # noqa: S311 - uniqueness, not secrecy: ids are not credentials


def _reseed_after_fork() -> None:
    # A forked worker (gunicorn, Celery, multiprocessing) would otherwise repeat its
    # parent's sequence, and equal ids are merged by RTTM as one event.
    _RANDOM.seed()
    _STATE["ms"], _STATE["counter"] = 0, 0


os.register_at_fork(after_in_child=_reseed_after_fork)


def uuid7(unix_ms: int | None = None, rng: random.Random | None = None) -> str:
    """A UUIDv7 string: 48-bit millisecond timestamp, then a counter and random bits.

    Within one millisecond the 12-bit ``rand_a`` field counts up (RFC 9562 §6.2, method 1),
    so ids from one process sort in creation order. Pass ``unix_ms`` and a seeded ``rng``
    for reproducible ids (the simulator does).
    """
    if rng is not None:
        ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
        counter, tail = rng.getrandbits(12), rng.getrandbits(62)
    else:
        with _LOCK:
            ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
            if ms == _STATE["ms"] and _STATE["counter"] < 0xFFF:
                _STATE["counter"] += 1
            else:
                _STATE["ms"], _STATE["counter"] = ms, _RANDOM.getrandbits(8)
            counter = _STATE["counter"]
        tail = _RANDOM.getrandbits(62)
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | tail
    hex_ = f"{value:032x}"
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"
