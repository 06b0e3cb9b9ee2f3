"""Where alerts are delivered: Alertmanager(s) and a webhook, from the environment.

``RTTM_ALERTMANAGER_URL`` (comma-separated for an HA pair: each gets every alert),
``RTTM_ALERT_WEBHOOK_URL`` with the optional ``RTTM_ALERT_WEBHOOK_SECRET``,
``RTTM_DASHBOARD_URL`` (links in the alerts), ``RTTM_ALERT_HORIZON`` (transitions older
than this are stored but not sent) and ``RTTM_ALERT_RESEND`` (how often firing alerts are
sent to Alertmanager again). A URL may carry ``user:password@`` for HTTP basic auth, and a
webhook's path or query may be a secret token: logs, errors and the outbox name a receiver
by its kind, scheme, host and port only (``webhook https://chat.example:443/…``).

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

from rttm.core.config import ConfigError
from rttm.core.durations import parse_duration, parse_positive_duration

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
    url: str = field(repr=False)  # as configured: may hold credentials and tokens
    where: str  # scheme://host:port, and "/…" if a path or query follows: nothing secret

    @property
    def name(self) -> str:
        """``KIND WHERE``: how the outbox, the logs and the errors name it."""
        return f"{self.kind} {self.where}"

    def endpoint(self, path: str = "") -> str:
        """The URL to call, without credentials; ``path`` goes below its own path."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = _netloc(host, parts.port)
        joined = parts.path.rstrip("/") + path if path else parts.path
        return urlunsplit((parts.scheme, netloc, joined, parts.query, ""))

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


def _netloc(host: str, port: int | None) -> str:
    return (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")


def parse_url(name: str, raw: str) -> tuple[str, str]:
    """``(url, where)`` of an http(s) URL from ``name``; anything else is a ``ConfigError``.

    ``where`` is scheme://host:port (the scheme's default port written out), with ``/…``
    when a path or query follows, since that may be secret. Errors never show what may
    be credentials.
    """
    text = raw.strip()
    hidden = "@" in text  # user:password@, or worse: a password with "/" in it
    if "://" not in text:
        shown = "(not shown: it holds an @)" if hidden else repr(text)
        msg = f"{name}: {shown} is not a URL: write it as http://HOST:PORT"
        raise ConfigError(msg)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        msg = f"{name}: scheme {scheme!r} is not supported: use http:// or https://"
        raise ConfigError(msg)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        of = "" if hidden else f" of {scheme}://{host}"
        msg = f"{name}: the port{of} is not a number from 0 to 65535"
        raise ConfigError(msg) from None
    if not host:
        msg = f"{name}: no host in the URL: write it as {scheme}://HOST:PORT"
        raise ConfigError(msg)
    default = 443 if scheme == "https" else 80
    where = f"{scheme}://{_netloc(host, port if port is not None else default)}"
    if parts.path not in ("", "/") or parts.query:
        where += "/…"
    return text, where


def _duration(env: Mapping[str, str], name: str, default: str) -> float:
    raw = env.get(name, "").strip() or default
    try:
        return parse_positive_duration(raw)
    except ValueError as exc:
        msg = f"{name}: {exc}"
        raise ConfigError(msg) from None


def _receiver(kind: Kind, name: str, raw: str) -> Receiver:
    url, where = parse_url(name, raw)
    return Receiver(kind, url, where)


def alertmanagers(env: Mapping[str, str] = os.environ) -> tuple[Receiver, ...]:
    """The Alertmanagers of ``RTTM_ALERTMANAGER_URL`` (none: an empty tuple)."""
    parts = [part for part in env.get(ENV_ALERTMANAGER, "").split(",") if part.strip()]
    managers = tuple(
        _receiver(
            "alertmanager",
            f"{ENV_ALERTMANAGER} entry {n}" if len(parts) > 1 else ENV_ALERTMANAGER,
            part,
        )
        for n, part in enumerate(parts, 1)
    )
    if len({m.name for m in managers}) != len(managers):
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
    dashboard = _dashboard(raw_dashboard) if raw_dashboard else None
    return Delivery(
        alertmanagers=managers,
        webhook=webhook,
        webhook_secret=secret.encode() or None,
        dashboard_url=dashboard,
        horizon_s=_duration(env, ENV_HORIZON, DEFAULT_HORIZON),
        resend_s=_duration(env, ENV_RESEND, DEFAULT_RESEND),
    )


def _dashboard(raw: str) -> str:
    """The dashboard's URL as links need it (checked like a receiver's; no credentials)."""
    url, _ = parse_url(ENV_DASHBOARD, raw)
    if urlsplit(url).username is not None:
        msg = f"{ENV_DASHBOARD}: write it without user:password@ (it is put in every alert)"
        raise ConfigError(msg)
    return url
