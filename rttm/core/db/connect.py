"""Open PostgreSQL connections with errors that say where, without credentials."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from rttm.core.errors import RttmError

#: A connection whose rows are tuples (the sinks, migrations, the recount of `verify`).
Conn = psycopg.Connection[tuple[Any, ...]]
#: A connection whose rows are dicts by column name (the views, the alert sender).
DictConn = psycopg.Connection[dict[str, Any]]

#: Seconds to wait for a server that does not answer: fail fast on a wrong address.
CONNECT_TIMEOUT_S = 5


def error_cause(exc: BaseException) -> str:
    """The cause of an error in one line, or its type name when it has no text.

    Of a server's error, its primary message (no DETAIL, HINT or CONTEXT lines). libpq
    writes ``connection to server at "h", port p failed: FATAL:  <cause>`` and may add
    indented hint lines ("Is the server running on that host…?"): of those the cause alone
    is kept; the address is in the caller's message already.
    """
    if isinstance(exc, psycopg.Error) and exc.sqlstate and exc.diag.message_primary:
        return exc.diag.message_primary  # the server's answer, without DETAIL or CONTEXT
    lines = [line for line in str(exc).splitlines() if line.strip() and not line[0].isspace()]
    if not lines:
        return type(exc).__name__
    text = lines[-1].strip()
    if isinstance(exc, psycopg.Error):  # libpq's own: no SQLSTATE, the cause after "failed:"
        text = text.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip()
    return text or type(exc).__name__


def describe(url: str) -> str:
    """``host:port/dbname`` of a libpq URL, with user and password left out."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable database url)"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or '?'}"


def sink_connection(url: str, application_name: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A flow sink's long-lived autocommit connection; errors are raised as psycopg's own.

    TCP keepalives make a silent network partition show within about 20 s instead of the
    kernel's two hours, so the sink's retry policy (``rttm.core.db.retry``) can act on it.
    """
    return psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name=application_name,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=3,
        keepalives_count=3,
    )


def connect(
    url: str, *, autocommit: bool = False, **settings: str
) -> psycopg.Connection[tuple[Any, ...]]:
    """Connect to ``url``; a failure raises :class:`RttmError` naming the server, not secrets.

    ``settings`` are server settings for the session (``statement_timeout="5s"``).
    """
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    try:
        if options:
            return psycopg.connect(
                url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=autocommit, options=options
            )
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=autocommit)
    except psycopg.ProgrammingError:
        # The parser's message may quote parts of the URL, password included: not shown.
        msg = "invalid database url: expected postgresql://user@host:port/dbname"
        raise RttmError(msg) from None
    except psycopg.OperationalError as exc:
        msg = f"cannot connect to postgres at {describe(url)}: {error_cause(exc)}"
        raise RttmError(msg) from None
