"""Liveness and readiness of a long-running process, for ``/healthz`` and ``/readyz``.

``/healthz`` answers while the process can answer at all. ``/readyz`` asks each of the
process's checks in turn; the first that fails gives the one-line reason of a 503:

- **database**: a new connection answers ``SELECT 1`` (the dashboard and both flows);
- **broker**: the cluster returns metadata (both flows);
- **flow**: the flow has started reading and is either making progress or caught up.

A probe never waits longer than ``PROBE_TIMEOUT_S`` per server, and answers are cached for
``CACHE_S`` so that a busy prober does not become a load on the servers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rttm.core.config import KafkaSettings, rejected_kafka_config
from rttm.core.db.connect import describe, error_cause
from rttm.core.stream.stats import COUNTERS, SourceCounters

#: Seconds a readiness probe waits for one server.
PROBE_TIMEOUT_S = 2
#: Seconds a readiness answer is reused.
CACHE_S = 1.0
#: A flow behind its partitions' ends that has read nothing for this long is stalled.
STALL_S = 60.0

#: A check: None when fine, else why not ready (one line).
Check = Callable[[], "str | None"]


def database(url: str) -> Check:
    """The database at ``url`` accepts a new connection and answers a query.

    Bounded by ``PROBE_TIMEOUT_S`` at each step: connecting, the query (a statement
    timeout), and a network path that stops answering (a TCP user timeout).
    """
    limit_ms = int(PROBE_TIMEOUT_S * 1000)

    def check() -> str | None:
        try:
            with psycopg.connect(
                url,
                connect_timeout=PROBE_TIMEOUT_S,
                options=f"-c statement_timeout={limit_ms}",
                tcp_user_timeout=limit_ms,
            ) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return f"database unavailable: postgres at {describe(url)}: {error_cause(exc)}"
        return None

    return check


class _BrokerCheck:
    """The Kafka cluster answers a metadata request (one admin client, made on first use)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._client: AdminClient | None = None

    def __call__(self) -> str | None:
        if self._client is None:
            try:
                self._client = AdminClient(self._settings.client_config())
            except (KafkaException, ValueError, TypeError) as exc:
                return str(rejected_kafka_config(exc, self._settings.extra))
        try:
            self._client.list_topics(timeout=PROBE_TIMEOUT_S)
        except KafkaException as exc:
            return f"broker unavailable: kafka at {self._settings.brokers}: {exc.args[0].str()}"
        return None


def broker(settings: KafkaSettings) -> Check:
    """The Kafka cluster of ``settings`` answers a metadata request."""
    return _BrokerCheck(settings)


def flow_progress(counters: SourceCounters = COUNTERS, stall_s: float = STALL_S) -> Check:
    """The flow polls its source, and reads or has nothing left to read.

    Not ready before its first poll (pre-flight checks, waiting for cluster peers, restoring
    a recovery snapshot), while any of its workers is blocked (no poll for ``stall_s``: a
    worker's sink and source share its thread), or while messages wait and none has been
    read for ``stall_s``.
    """

    def check() -> str | None:
        now = time.monotonic()
        polls = list(counters.polled.values())
        if not polls:
            return "starting: the flow has not begun reading"
        if (quiet := now - min(polls)) > stall_s:
            return f"stalled: a worker has not polled its source for {quiet:.0f} s"
        behind = counters.remaining_lag
        idle = now - (counters.read_at or counters.started)
        if behind and idle > stall_s:
            return f"stalled: {behind:,} messages to read and none read for {idle:.0f} s"
        return None

    return check


class Readiness:
    """A process's checks, asked in order; the answer is cached for ``CACHE_S``."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self._checks = list(checks)
        self._lock = threading.Lock()
        self._answer: str | None = "starting: readiness not checked yet"
        self._at = float("-inf")

    def reason(self) -> str | None:
        """None when ready, else the first failing check's reason.

        One check runs at a time: a probe that arrives meanwhile gets the last answer
        instead of waiting, so slow servers never pile probes up in the process.
        """
        if not self._lock.acquire(blocking=False):
            return self._answer
        try:
            if time.monotonic() - self._at > CACHE_S:
                self._answer = next(
                    (why for check in self._checks if (why := check()) is not None), None
                )
                self._at = time.monotonic()
            return self._answer
        finally:
            self._lock.release()
