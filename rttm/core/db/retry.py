"""One retry policy for every sink that writes PostgreSQL (the ingestion's and the metrics').

A failed transaction is classified by its SQLSTATE:

- **lost**: the connection broke or the server cannot serve now (an operational error
  without SQLSTATE: the socket died; class 08; 57P01 to 57P03, a shutdown or start-up;
  57P05, an idle session timed out; class 53, out of resources). Reconnect and retry the
  same batch with capped exponential backoff (:mod:`rttm.core.backoff`), for as long as
  it takes.
- **conflict**: the transaction lost a race (class 40: serialization failure, deadlock;
  55P03, a lock not available; 57014, cancelled). Retry it ``CONFLICT_RETRIES`` times after
  a short random pause, then wait with the same backoff as for an outage.
- **fault**: anything else (a missing privilege, a schema changed under the flow, a bug,
  including psycopg's own client-side errors, which have no SQLSTATE). No retry can mend
  it: the flow stops with one line that names the SQLSTATE.

A stop asked for during a wait ends the process at once (``rttm.core.stopping``): the batch is
not committed, so the next start re-reads it.
"""

from __future__ import annotations

import enum
import logging
import random

import psycopg

from rttm.core import stopping
from rttm.core.backoff import BACKOFF_CAP_S, Backoff
from rttm.core.db.connect import error_cause
from rttm.core.outage import OutageLog

_LOG = logging.getLogger(__name__)
#: Immediate retries of a transaction that lost a race: a deadlock or serialization failure
#: usually clears on the next attempt, once the other transaction has finished.
CONFLICT_RETRIES = 3
#: Longest random pause before each of those retries, so that two writers that collided do
#: not collide again in step.
CONFLICT_PAUSE_S = 0.05
_LOST_STATES = ("08", "57P01", "57P02", "57P03", "57P05", "53")
_CONFLICT_STATES = ("40", "55P03", "57014")


class Failure(enum.Enum):
    """What kind of failure a PostgreSQL error is (see the module docstring)."""

    LOST = "lost"
    CONFLICT = "conflict"
    FAULT = "fault"


def classify(exc: psycopg.Error) -> Failure:
    """The class of ``exc`` by its SQLSTATE."""
    state = exc.sqlstate
    if state is None:  # not the server's answer: a broken connection, or a client-side bug
        lost = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return Failure.LOST if lost else Failure.FAULT
    if state.startswith(_LOST_STATES):
        return Failure.LOST
    if state.startswith(_CONFLICT_STATES):
        return Failure.CONFLICT
    return Failure.FAULT


def describe_fault(exc: psycopg.Error, what: str) -> str:
    """One line for a fault: what was refused, the SQLSTATE and its name, the reason."""
    state = f"SQLSTATE {exc.sqlstate or 'none'} {type(exc).__name__}"
    return f"postgres refused {what} ({state}): {error_cause(exc)}"


class Retry:
    """The retries of one batch: call :meth:`after` with each error, then try again.

    Args:
        what: the batch, for messages (``"a batch of shard 0"``).
        outage: the process's log of this server's outages (one line each way).
    """

    def __init__(self, what: str, outage: OutageLog) -> None:
        self._what, self._outage = what, outage
        self._backoff = Backoff()
        self._conflicts = 0

    def after(self, exc: psycopg.Error) -> Failure:
        """Wait as the policy says for ``exc``; a fault stops the flow (see the module)."""
        failure = classify(exc)
        if failure is Failure.FAULT:
            stopping.fail(describe_fault(exc, self._what))
        if failure is Failure.LOST:
            self._outage.lost(error_cause(exc))
            stopping.abandon("the database is unavailable")
            self._backoff.pause()
            return failure
        self._conflicts += 1
        if self._conflicts <= CONFLICT_RETRIES:
            _LOG.debug("%s rolled back (%s); retrying it", self._what, error_cause(exc))
            stopping.wait(random.uniform(0, CONFLICT_PAUSE_S))  # noqa: S311 - jitter, not crypto
            return failure
        if self._conflicts == CONFLICT_RETRIES + 1:
            _LOG.warning(
                "%s rolled back %d times (%s); retrying with backoff up to %.0f s",
                self._what,
                self._conflicts,
                error_cause(exc),
                BACKOFF_CAP_S,
            )
        stopping.abandon("a batch keeps being rolled back")
        self._backoff.pause()
        return failure
