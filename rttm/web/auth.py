"""Who is asking: HTTP Basic against bcrypt users, Bearer tokens, or a trusted proxy's word.

:class:`Authenticator` knows nothing of any web framework: it takes the ``Authorization``
header as text and the client's address and returns a :class:`Verdict`, so the dashboard's
middleware (:mod:`rttm.web.auth_middleware`) and any other HTTP server can share it. Every
comparison takes the same time whatever it compares: bcrypt's own, ``hmac.compare_digest``
for tokens, and a bcrypt check against a dummy hash for an unknown user, so the time of an
answer does not tell which user names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import bcrypt

from rttm.core.config import ConfigError
from rttm.web import credentials
from rttm.web.throttle import Throttle

_LOG = logging.getLogger(__name__)
REALM = "rttm"
DEFAULT_PROXY_HEADER = "X-Forwarded-User"
#: An ``Authorization`` header longer than this is refused unread (a token is 43 characters,
#: Basic credentials rarely 200).
MAX_HEADER_CHARS = 4096
#: bcrypt reads this many bytes of a password; htpasswd and crypt cut longer ones when they
#: hash, so the same cut when checking matches what they stored (pyca bcrypt 5 refuses).
BCRYPT_MAX_BYTES = 72
#: Successful Basic checks remembered, and for how long: bcrypt costs 50-250 ms of CPU by
#: design and the page polls twice every 2 s, each poll sending the same credentials, so
#: without this an open dashboard would keep a core busy. Keys are an HMAC of the
#: credentials under a key made at start-up: the password itself is never kept.
VERIFIED_S = 300.0
VERIFIED_MAX = 1024
#: Longest user name a trusted proxy may send, and the length of a name in the log.
MAX_PROXY_USER_CHARS = 256
LOGGED_NAME_CHARS = 64


@dataclass(frozen=True)
class Verdict:
    """The answer to one request: 200 (``user`` signed in), 401, or 429 after ``retry_after_s``."""

    status: int
    user: str | None = None
    retry_after_s: int = 0

    @property
    def allowed(self) -> bool:
        """Whether the request may go on."""
        return self.status == 200


_NEEDS_CREDENTIALS = Verdict(401)


def printable(text: str, limit: int = LOGGED_NAME_CHARS) -> str:
    """``text`` safe for a log line: control and other unprintable characters as ``?``, cut."""
    cut = text[:limit]
    clean = "".join(char if char.isprintable() else "?" for char in cut)
    return clean + ("…" if len(text) > limit else "")


Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(addresses: Iterable[str]) -> tuple[Network, ...]:
    found = []
    for address in addresses:
        try:
            found.append(ipaddress.ip_network(address.strip(), strict=False))
        except ValueError:
            msg = f"--trust-proxy: {address.strip()!r} is not an IP address or network"
            raise ConfigError(msg) from None
    return tuple(found)


class _Verified:
    """Recently verified Basic credentials → user, bounded in size and age."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, credentials: bytes) -> bytes:
        return hmac.new(self._key, credentials, hashlib.sha256).digest()

    def get(self, key: bytes) -> str | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[1] < time.monotonic():
                return None
            return found[0]

    def put(self, key: bytes, user: str) -> None:
        with self._lock:
            self._entries[key] = (user, time.monotonic() + VERIFIED_S)
            self._entries.move_to_end(key)
            while len(self._entries) > VERIFIED_MAX:
                self._entries.popitem(last=False)


class Authenticator:
    """Checks each request against the users, tokens and trusted proxies it was given.

    ``users``: name → bcrypt hash; ``tokens``: name → SHA-256 digest of the token (tokens
    are long and random, so a fast hash is enough, unlike passwords); ``proxies``: addresses
    or networks whose ``proxy_header`` names the user (from anyone else it is ignored).
    """

    def __init__(
        self,
        users: Mapping[str, bytes] | None = None,
        tokens: Mapping[str, bytes] | None = None,
        proxies: Iterable[str] = (),
        proxy_header: str = DEFAULT_PROXY_HEADER,
        throttle: Throttle | None = None,
    ) -> None:
        self._users = dict(users or {})
        self._tokens = dict(tokens or {})
        self._proxies = _networks(proxies)
        self.proxy_header = proxy_header
        self.throttle = throttle if throttle is not None else Throttle()
        self._verified = _Verified()
        # An unknown user costs the same bcrypt check as a known one: against this hash,
        # made at the highest cost the file uses.
        rounds = max((credentials.cost(h) for h in self._users.values()), default=4)
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds))

    @classmethod
    def from_files(
        cls,
        auth_file: Path | str | None,
        token_file: Path | str | None,
        proxies: Iterable[str] = (),
        proxy_header: str = DEFAULT_PROXY_HEADER,
    ) -> Authenticator:
        """Users from an htpasswd file, tokens from a token file (either may be None)."""
        users = credentials.read_users(Path(auth_file)) if auth_file else {}
        tokens = credentials.read_tokens(Path(token_file)) if token_file else {}
        return cls(users, tokens, proxies, proxy_header)

    @property
    def configured(self) -> bool:
        """Whether anyone at all can be let in (else every request would be refused)."""
        return bool(self._users or self._tokens or self._proxies)

    def summary(self) -> str:
        """Who may sign in, for the start-up line: ``2 users, 1 token, proxy 10.0.0.5``."""
        parts = [
            f"{len(self._users)} user{'s' * (len(self._users) != 1)}",
            f"{len(self._tokens)} token{'s' * (len(self._tokens) != 1)}",
        ]
        if self._proxies:
            parts.append("proxy " + ",".join(str(network) for network in self._proxies))
        return ", ".join(parts)

    def challenges(self) -> list[str]:
        """The ``WWW-Authenticate`` values of a 401: Basic, and Bearer when tokens exist.

        With tokens only, Basic is not offered: a browser would ask for a password that
        nothing could accept.
        """
        offered = []
        if self._users or not self._tokens:
            offered.append(f'Basic realm="{REALM}", charset="UTF-8"')
        if self._tokens:
            offered.append(f'Bearer realm="{REALM}"')
        return offered

    def check(
        self, authorization: str | None, client_addr: str, proxy_user: str | None = None
    ) -> Verdict:
        """The verdict on a request with this ``Authorization`` header from ``client_addr``.

        ``proxy_user`` is the value of :attr:`proxy_header`, believed only from a trusted
        proxy. A request without credentials is answered 401 and not counted; bad ones are
        logged and counted against the address (:class:`Throttle`), which is answered 429
        for a while once it has failed too often. May take a bcrypt check's time: run it
        off the event loop.
        """
        if proxy_user is not None and self._trusted(client_addr):
            name = proxy_user.strip()
            if 0 < len(name) <= MAX_PROXY_USER_CHARS and name.isprintable():
                return Verdict(200, name)
        if authorization is None:
            return _NEEDS_CREDENTIALS
        if waiting := self.throttle.blocked_for(client_addr):
            return Verdict(429, retry_after_s=math.ceil(waiting))
        user, shown = self._credentials(authorization)
        if user is not None:
            return Verdict(200, user)
        _LOG.warning("sign-in failed for %s from %s", shown, printable(client_addr))
        if self.throttle.failed(client_addr):
            _LOG.warning(
                "too many failed sign-ins from %s: refused for a while", printable(client_addr)
            )
            return Verdict(429, retry_after_s=math.ceil(self.throttle.blocked_for(client_addr)))
        return _NEEDS_CREDENTIALS

    def _trusted(self, client_addr: str) -> bool:
        try:
            address = ipaddress.ip_address(client_addr)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 proxy
        return any(address in network for network in self._proxies)

    def _credentials(self, authorization: str) -> tuple[str | None, str]:
        """The user the header proves, or None and how to name the attempt in the log."""
        if len(authorization) > MAX_HEADER_CHARS:
            return None, f"an Authorization header of {len(authorization):,} characters"
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "basic" and self._users:
            return self._basic(value.strip())
        if scheme.lower() == "bearer" and self._tokens:
            return self._bearer(value.strip())
        return None, f"an Authorization header of scheme {printable(scheme, 16)!r}"

    def _basic(self, value: str) -> tuple[str | None, str]:
        try:
            raw = base64.b64decode(value, validate=True)
            text = raw.decode("utf-8")
        except ValueError:  # not base64 (binascii.Error), non-ASCII, or not UTF-8
            return None, "malformed Basic credentials"
        user, colon, password = text.partition(":")
        if not colon or not user:
            return None, "Basic credentials without a user name"
        shown = f"user {printable(user)!r}"
        key = self._verified.key(raw)
        if self._verified.get(key) == user:
            return user, shown
        stored = self._users.get(user)
        secret = password.encode("utf-8")[:BCRYPT_MAX_BYTES]
        matched = bcrypt.checkpw(secret, stored if stored is not None else self._dummy)
        if not matched or stored is None:
            return None, shown
        self._verified.put(key, user)
        return user, shown

    def _bearer(self, value: str) -> tuple[str | None, str]:
        digest = hashlib.sha256(value.encode("utf-8", "replace")).digest()
        found = None
        for name, expected in self._tokens.items():  # every one compared: no early answer
            if hmac.compare_digest(digest, expected):
                found = name
        return (f"token:{found}", "a token") if found is not None else (None, "an unknown token")
