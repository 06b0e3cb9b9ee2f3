"""``rttm serve``'s security options: who may sign in, which Host names, and TLS.

Nothing is opened to the network by accident: a bind address other than loopback is
refused unless some authentication is configured (users, tokens or a trusted proxy), and
the ``Host`` header is checked in every mode, so a page elsewhere that rebinds its name to
this server cannot read the API through a visitor's browser.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rttm.core.addresses import LOCALHOST
from rttm.core.config import ConfigError
from rttm.web.auth import DEFAULT_PROXY_HEADER, Authenticator

ENV_AUTH_FILE = "RTTM_SERVE_AUTH_FILE"
ENV_TOKEN_FILE = "RTTM_SERVE_TOKEN_FILE"  # noqa: S105 - a variable's name
#: Bind addresses that mean "every interface": not a name a client puts in ``Host``.
WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared with, not bound
ALWAYS_ALLOWED = ("localhost", LOCALHOST)


@dataclass(frozen=True)
class Tls:
    """The server's certificate chain and private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Security:
    """What :func:`from_args` settled: who may sign in, Host names, TLS, start-up notes."""

    authenticator: Authenticator | None
    allowed_hosts: list[str]
    tls: Tls | None
    notes: list[str]


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """Add the authentication, Host and TLS options to ``rttm serve``."""
    serve.add_argument(
        "--auth-file",
        metavar="FILE",
        help="users who may sign in (HTTP Basic): an htpasswd file of bcrypt "
        f"entries (htpasswd -B), mode 600 (default ${ENV_AUTH_FILE})",
    )
    serve.add_argument(
        "--token-file",
        metavar="FILE",
        help="bearer tokens for scrapers: NAME:SHA256-HEX lines, mode 600 "
        f"(default ${ENV_TOKEN_FILE})",
    )
    serve.add_argument(
        "--trust-proxy",
        metavar="ADDR[,ADDR...]",
        help="addresses or networks of a signing-in reverse proxy whose "
        "--proxy-user-header names the user",
    )
    serve.add_argument(
        "--proxy-user-header",
        metavar="NAME",
        default=DEFAULT_PROXY_HEADER,
        help=f"the header a trusted proxy names the user in (default {DEFAULT_PROXY_HEADER})",
    )
    serve.add_argument(
        "--allowed-host",
        metavar="NAME",
        action="append",
        default=[],
        help="a Host name to answer besides localhost, 127.0.0.1 and --host "
        "(repeatable): the names people use to reach this server",
    )
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve HTTPS with this certificate chain (PEM; needs --tls-key)",
    )
    serve.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _tls(cert: str | None, key: str | None) -> Tls | None:
    if not cert and not key:
        return None
    if not cert or not key:
        missing = "--tls-key" if cert else "--tls-cert"
        msg = f"{missing} is missing: TLS needs both --tls-cert and --tls-key"
        raise ConfigError(msg)
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            msg = f"{flag} {path}: cannot read it: {exc.strerror or exc}"
            raise ConfigError(msg) from None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError:
        msg = f"--tls-cert {cert}, --tls-key {key}: not a PEM certificate chain and its key"
        raise ConfigError(msg) from None
    return Tls(Path(cert), Path(key))


def from_args(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Security:
    """The security of this ``rttm serve``, or a one-line :class:`ConfigError`."""
    tls = _tls(args.tls_cert, args.tls_key)
    auth_file = args.auth_file or env.get(ENV_AUTH_FILE) or None
    token_file = args.token_file or env.get(ENV_TOKEN_FILE) or None
    proxies = [a for a in (args.trust_proxy or "").split(",") if a.strip()]
    authenticator = None
    if auth_file or token_file or proxies:
        authenticator = Authenticator.from_files(
            auth_file, token_file, proxies, args.proxy_user_header
        )
    if authenticator is None and not is_loopback(args.host):
        msg = (
            f"--host {args.host} would open the dashboard to the network without "
            "authentication: add --auth-file FILE and/or --token-file FILE (or "
            "--trust-proxy ADDR behind a signing-in proxy), or bind 127.0.0.1"
        )
        raise ConfigError(msg)
    hosts = [*ALWAYS_ALLOWED, *args.allowed_host]
    notes = []
    if args.host not in WILDCARDS:
        hosts.append(args.host)
    elif not args.allowed_host:
        notes.append(
            "answering only Host localhost and 127.0.0.1: add --allowed-host NAME "
            "for the names people use to reach this server"
        )
    if authenticator is not None:
        notes.append(f"sign-in required ({authenticator.summary()}); /healthz, /readyz open")
    if tls is None and not is_loopback(args.host):
        notes.append(
            "no TLS: passwords and tokens cross the network in clear; add --tls-cert"
            " and --tls-key, or put a TLS proxy in front"
        )
    return Security(authenticator, list(dict.fromkeys(hosts)), tls, notes)
