"""What a 503 of the API says: enough to act on, nothing of where the database is.

The dashboard's port may face more people than the database's does, so its answers do not
name the database's host, port or name; the log keeps the whole reason for the operator.
A request past its time budget, or refused as one too many, says so as it is: those lines
name only the view.
"""

from __future__ import annotations

import logging

import psycopg

from rttm.core.db.connect import error_cause
from rttm.core.errors import RttmError
from rttm.views.budget import BudgetExceeded, Busy
from rttm.views.common import query_failed

_LOG = logging.getLogger(__name__)
UNAVAILABLE = "database unavailable"


def unavailable_detail(exc: RttmError) -> str:
    """The one line a 503 shows for ``exc``; the full line goes to the log."""
    if isinstance(exc, BudgetExceeded | Busy):
        return str(exc)
    _LOG.warning("%s", exc)
    return UNAVAILABLE


def query_failed_detail(database_url: str, exc: psycopg.Error) -> str:
    """The one line a 503 shows for a query that failed; the full line goes to the log.

    A server's error keeps its primary message (``relation "x" does not exist``), which
    speaks of the query, not of where it ran; a connection lost mid-query says only that.
    """
    _LOG.warning("%s", query_failed(database_url, exc))
    if not exc.sqlstate:
        return f"query failed: {UNAVAILABLE}"
    hint = " (run `rttm db migrate`?)" if isinstance(exc, psycopg.errors.UndefinedTable) else ""
    return f"query failed: {error_cause(exc)} (SQLSTATE {exc.sqlstate}){hint}"
