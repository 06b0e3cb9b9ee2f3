"""Refuse an address for a while after too many failed sign-ins, in a bounded table.

Guessing passwords over HTTP costs the guesser one request per guess and the server one
bcrypt check (~50-250 ms of CPU) per guess: a cap per address bounds both. The table keeps
at most ``max_addresses`` entries, the least recently seen dropped first, so a flood from
many addresses costs memory once, not without bound. IPv6 addresses count per /64 (what
one host usually has), or a single host could step around its own block.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Failures from one address within ``WINDOW_S`` that block it: a person mistyping a
#: password a few times stays well below; a script guessing is stopped after ten guesses.
FAILURES = 10
#: Seconds over which failures are counted, and for which a blocked address is refused.
WINDOW_S = 60.0
BLOCK_S = 60.0
#: Addresses remembered at most (about 200 bytes each: ~2 MB at the cap).
MAX_ADDRESSES = 10_000
_IPV6_PREFIX = 64


@dataclass
class _Entry:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


def address_key(address: str) -> str:
    """The key an address counts under: itself, or its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]  # not an IP (a Unix socket's peer): counted as written
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:10.0.0.1 is 10.0.0.1
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, _IPV6_PREFIX), strict=False))
    return str(parsed)


class Throttle:
    """Counts failures per address; ``limit`` within ``window_s`` blocks it for ``block_s``."""

    def __init__(
        self,
        limit: int = FAILURES,
        window_s: float = WINDOW_S,
        block_s: float = BLOCK_S,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._block_s = block_s
        self._max = max_addresses
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # checks run on worker threads

    def __len__(self) -> int:
        return len(self._entries)

    def blocked_for(self, address: str) -> float:
        """Seconds ``address`` stays refused, 0 when it is not."""
        with self._lock:
            entry = self._entries.get(address_key(address))
            if entry is None:
                return 0.0
            return max(0.0, entry.blocked_until - self._clock())

    def failed(self, address: str) -> bool:
        """Count one failure of ``address``; True when this one blocks it."""
        now = self._clock()
        key = address_key(address)
        with self._lock:
            entry = self._entries.pop(key, None) or _Entry()
            self._entries[key] = entry  # now the most recently seen
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            entry.failures.append(now)
            while entry.failures and entry.failures[0] <= now - self._window_s:
                entry.failures.popleft()
            if len(entry.failures) < self._limit or entry.blocked_until > now:
                return False
            entry.blocked_until = now + self._block_s
            entry.failures.clear()
            return True
