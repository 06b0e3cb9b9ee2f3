"""Where alerts are delivered: Alertmanager(s) and a webhook, from the environment.

``RTTM_ALERTMANAGER_URL`` (comma-separated for an HA pair: each gets every alert),
``RTTM_ALERT_WEBHOOK_URL`` with the optional ``RTTM_ALERT_WEBHOOK_SECRET``,
``RTTM_DASHBOARD_URL`` (links in the alerts), ``RTTM_ALERT_HORIZON`` (transitions older
than this are stored but not sent) and ``RTTM_ALERT_RESEND`` (how often firing alerts are
sent to Alertmanager again). A URL may carry ``user:password@`` for HTTP basic auth; it is
never logged or stored, only its credential-free form is.

Every problem is a one-line :class:`ConfigError` at start-up; an unreachable receiver is
not one: the outbox waits for it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from rttm.config import ConfigError
from rttm.durations import parse_duration

ENV_ALERTMANAGER = "RTTM_ALERTMANAGER_URL"
ENV_WEBHOOK = "RTTM_ALERT_WEBHOOK_URL"
ENV_WEBHOOK_SECRET = "RTTM_ALERT_WEBHOOK_SECRET"  # noqa: S105 - a variable's name
ENV_DASHBOARD = "RTTM_DASHBOARD_URL"
ENV_HORIZON = "RTTM_ALERT_HORIZON"
ENV_RESEND = "RTTM_ALERT_RESEND"
DEFAULT_HORIZON: Final = "5m"
DEFAULT_RESEND: Final = "1m"  # Prometheus' --rules.alert.resend-delay
#: The Alertmanager API path alerts are posted to, below the configured URL.
ALERTS_PATH: Final = "/api/v2/alerts"
SILENCES_PATH: Final = "/api/v2/silences"

Kind = Literal["alertmanager", "webhook"]


@dataclass(frozen=True)
class Receiver:
    """One place notifications go to."""

    kind: Kind
    url: str = field(repr=False)  # as configured: may hold credentials
    base: str  # the URL without credentials

    @property
    def name(self) -> str:
        """``KIND URL``, credentials left out: how the outbox and the logs name it."""
        return f"{self.kind} {self.base}"

    def endpoint(self, path: str = "") -> str:
        """The URL to call: the base, plus ``path`` below it (Alertmanager's API)."""
        return self.base.rstrip("/") + path if path else self.base

    def headers(self) -> dict[str, str]:
        """``Authorization`` for basic auth when the URL holds ``user:password@``."""
        parts = urlsplit(self.url)
        if parts.username is None:
            return {}
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


@dataclass(frozen=True)
class Delivery:
    """The receivers and the delivery policy of one metrics flow."""

    alertmanagers: tuple[Receiver, ...] = ()
    webhook: Receiver | None = None
    webhook_secret: bytes | None = field(default=None, repr=False)
    dashboard_url: str | None = None
    horizon_s: float = parse_duration(DEFAULT_HORIZON)
    resend_s: float = parse_duration(DEFAULT_RESEND)

    @property
    def receivers(self) -> tuple[Receiver, ...]:
        """Every receiver: the Alertmanagers, then the webhook."""
        return self.alertmanagers + ((self.webhook,) if self.webhook else ())

    @property
    def valid_for_s(self) -> float:
        """How far in the future a firing alert's ``endsAt`` lies (4 resends, as Prometheus)."""
        return 4 * self.resend_s


def parse_url(name: str, raw: str) -> tuple[str, str]:
    """``(url, base)`` of an http(s) URL from ``name``; anything else is a ``ConfigError``.

    ``base`` is the URL without credentials, also used in the error messages.
    """
    text = raw.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        msg = f"{name}: cannot parse {_masked(text)!r}: {exc}"
        raise ConfigError(msg) from None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    base = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    if parts.scheme not in ("http", "https"):
        scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        msg = f"{name}: {scheme} in {base or _masked(text)!r}: use http:// or https://"
        raise ConfigError(msg)
    if not host:
        msg = f"{name}: no host in {base!r}: write it as http://HOST:PORT"
        raise ConfigError(msg)
    return text, base


def _masked(text: str) -> str:
    # Keeps a password out of an error about a URL that did not parse.
    scheme, sep, rest = text.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def _duration(env: Mapping[str, str], name: str, default: str) -> float:
    raw = env.get(name, "").strip() or default
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        msg = f"{name}: {exc}"
        raise ConfigError(msg) from None
    if seconds <= 0:
        msg = f"{name} must be longer than 0s, got {raw!r}"
        raise ConfigError(msg)
    return seconds


def _receiver(kind: Kind, name: str, raw: str) -> Receiver:
    url, base = parse_url(name, raw)
    return Receiver(kind, url, base)


def alertmanagers(env: Mapping[str, str] = os.environ) -> tuple[Receiver, ...]:
    """The Alertmanagers of ``RTTM_ALERTMANAGER_URL`` (none: an empty tuple)."""
    managers = tuple(
        _receiver("alertmanager", ENV_ALERTMANAGER, part)
        for part in env.get(ENV_ALERTMANAGER, "").split(",")
        if part.strip()
    )
    if len({m.base for m in managers}) != len(managers):
        msg = f"{ENV_ALERTMANAGER}: the same Alertmanager is listed twice"
        raise ConfigError(msg)
    return managers


def from_env(env: Mapping[str, str] = os.environ) -> Delivery:
    """The delivery settings of the environment (none configured: nothing is sent)."""
    managers = alertmanagers(env)
    raw_webhook = env.get(ENV_WEBHOOK, "").strip()
    webhook = _receiver("webhook", ENV_WEBHOOK, raw_webhook) if raw_webhook else None
    secret = env.get(ENV_WEBHOOK_SECRET, "")
    if secret and webhook is None:
        msg = f"{ENV_WEBHOOK_SECRET} is set but {ENV_WEBHOOK} is not: set both or neither"
        raise ConfigError(msg)
    raw_dashboard = env.get(ENV_DASHBOARD, "").strip()
    dashboard = parse_url(ENV_DASHBOARD, raw_dashboard)[1] if raw_dashboard else None
    return Delivery(
        alertmanagers=managers, webhook=webhook, webhook_secret=secret.encode() or None,
        dashboard_url=dashboard, horizon_s=_duration(env, ENV_HORIZON, DEFAULT_HORIZON),
        resend_s=_duration(env, ENV_RESEND, DEFAULT_RESEND),
    )  # fmt: skip
