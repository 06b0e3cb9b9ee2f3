"""A time budget per view request, and a gate on how many heavy requests run at once.

A view must answer within its budget whatever the tables hold: the statement timeout bounds
one query, not the queries after it nor the Python that shapes their rows. A
:class:`Deadline` sets each statement's timeout to the time left and is checked between
steps; past it, :class:`BudgetExceeded` (an :class:`RttmError`: 503 with one line on the web,
one line in the terminal). A :class:`Gate` refuses a heavy request at once when enough are
already running, so ten slow polls cannot hold every worker thread and their memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg

from rttm.core.db.connect import DictConn
from rttm.core.errors import RttmError

#: Seconds a view request may take; the page polls every 2 s and gives up after 5 s.
DEFAULT_BUDGET_S = 5.0
#: Heavy view requests (status, alerts, /metrics) running at once; the page sends two per
#: poll, so four serve two open pages, and a flood of slow requests holds four threads.
DEFAULT_CONCURRENT = 4
_SET_TIMEOUT: LiteralString = "SELECT set_config('statement_timeout', %s, false)"


class BudgetExceeded(RttmError):
    """A view did not finish within its time budget."""


class Busy(RttmError):
    """Too many heavy view requests are running: this one is refused, not queued."""


class Deadline:
    """The end of one request's budget: ``seconds`` from now (monotonic clock)."""

    def __init__(self, seconds: float, what: str = "view") -> None:
        self.seconds = seconds
        self.what = what
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (negative once past)."""
        return self._end - time.monotonic()

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` once the budget is spent."""
        if self.remaining() <= 0:
            raise self.exceeded()

    def exceeded(self) -> BudgetExceeded:
        """The one-line error of a request past its budget."""
        return BudgetExceeded(f"{self.what}: not done within its time budget of {self.seconds:g} s")

    def execute(
        self, conn: DictConn, query: LiteralString, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The rows of ``query``, its statement timeout being the time left."""
        self.check()
        millis = max(1, int(self.remaining() * 1000))  # 0 would mean no timeout at all
        try:
            conn.execute(_SET_TIMEOUT, (str(millis),))
            return conn.execute(query, params).fetchall()
        except psycopg.errors.QueryCanceled:
            raise self.exceeded() from None


class Gate:
    """At most ``limit`` heavy requests at once; one more is refused at once (:class:`Busy`)."""

    def __init__(self, limit: int = DEFAULT_CONCURRENT) -> None:
        self._limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def enter(self, what: str) -> Iterator[None]:
        """Hold a slot while the block runs, or raise :class:`Busy` if none is free."""
        if not self._slots.acquire(blocking=False):
            msg = f"{what}: busy ({self._limit} view requests already running); try again shortly"
            raise Busy(msg)
        try:
            yield
        finally:
            self._slots.release()
