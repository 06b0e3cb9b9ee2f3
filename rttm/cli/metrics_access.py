"""Who may read a flow's ``--metrics-port``: the address it binds, and the credentials.

127.0.0.1 needs none. Any other address (``--metrics-host 0.0.0.0``, a LAN address) is
refused without credentials — an htpasswd file of bcrypt users and/or a file of hashed
bearer tokens, as ``rttm serve`` takes them — unless ``--metrics-unauthenticated`` says
that the network in between is trusted. Prometheus sends either kind from its scrape
config (``basic_auth``, or ``authorization: {credentials_file: …}``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from rttm.cli.serve_security import is_loopback
from rttm.core.addresses import LOCALHOST
from rttm.core.errors import RttmError
from rttm.web.auth import Authenticator

ENV_AUTH_FILE = "RTTM_METRICS_AUTH_FILE"
ENV_TOKEN_FILE = "RTTM_METRICS_TOKEN_FILE"  # noqa: S105 - a variable's name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metrics-host`` and the credentials of the metrics port."""
    parser.add_argument(
        "--metrics-host",
        default=LOCALHOST,
        metavar="ADDR",
        help="address of --metrics-port (default 127.0.0.1: this machine only;"
        " another needs credentials or --metrics-unauthenticated)",
    )
    parser.add_argument(
        "--metrics-auth-file",
        metavar="FILE",
        help=f"users allowed to scrape, htpasswd with bcrypt (default ${ENV_AUTH_FILE})",
    )
    parser.add_argument(
        "--metrics-token-file",
        metavar="FILE",
        help="bearer tokens allowed to scrape, hashed as for rttm serve "
        f"(default ${ENV_TOKEN_FILE})",
    )
    parser.add_argument(
        "--metrics-unauthenticated",
        action="store_true",
        help="serve --metrics-host without credentials: only on a network "
        "where everyone who can reach the port may read it",
    )


def authenticator(
    args: argparse.Namespace, env: Mapping[str, str] = os.environ
) -> Authenticator | None:
    """The credential check of the metrics port, or None when it is open.

    Raises:
        RttmError: a non-loopback address with neither credentials nor
            ``--metrics-unauthenticated``, or a credentials file that cannot be used.
    """
    auth_file = args.metrics_auth_file or env.get(ENV_AUTH_FILE, "").strip() or None
    token_file = args.metrics_token_file or env.get(ENV_TOKEN_FILE, "").strip() or None
    if auth_file is None and token_file is None:
        if is_loopback(args.metrics_host) or args.metrics_unauthenticated:
            return None
        msg = (
            f"--metrics-host {args.metrics_host} would show this process's metrics to anyone"
            " who can reach it: give --metrics-auth-file or --metrics-token-file (or"
            f" ${ENV_AUTH_FILE}, ${ENV_TOKEN_FILE}; Prometheus sends either), or"
            " --metrics-unauthenticated on a trusted network"
        )
        raise RttmError(msg)
    return Authenticator.from_files(auth_file, token_file)
