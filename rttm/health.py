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

from rttm.config import KafkaSettings
from rttm.db.connect import describe, error_cause
from rttm.ingest.stats import COUNTERS, Counters

#: Seconds a readiness probe waits for one server.
PROBE_TIMEOUT_S = 2
#: Seconds a readiness answer is reused.
CACHE_S = 1.0
#: A flow behind its partitions' ends that has read nothing for this long is stalled.
STALL_S = 60.0

#: A check: None when fine, else why not ready (one line).
Check = Callable[[], "str | None"]


def database(url: str) -> Check:
    """The database at ``url`` accepts a new connection and answers a query."""

    def check() -> str | None:
        try:
            with psycopg.connect(url, connect_timeout=PROBE_TIMEOUT_S) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return f"database unavailable: postgres at {describe(url)}: {error_cause(exc)}"
        return None

    return check


def broker(settings: KafkaSettings) -> Check:
    """The Kafka cluster answers a metadata request (one admin client, made on first use)."""
    client: list[AdminClient] = []

    def check() -> str | None:
        if not client:
            client.append(AdminClient(settings.client_config()))
        try:
            client[0].list_topics(timeout=PROBE_TIMEOUT_S)
        except KafkaException as exc:
            return f"broker unavailable: kafka at {settings.brokers}: {exc.args[0].str()}"
        return None

    return check


def flow_progress(counters: Counters = COUNTERS, stall_s: float = STALL_S) -> Check:
    """The flow polls its source, and reads or has nothing left to read.

    Not ready before its first poll (pre-flight checks, waiting for cluster peers, restoring
    a recovery snapshot), while its worker is blocked (no poll for ``stall_s``), or while
    messages wait and none has been read for ``stall_s``.
    """

    def check() -> str | None:
        now = time.monotonic()
        if counters.polled_at is None:
            return "starting: the flow has not begun reading"
        if (quiet := now - counters.polled_at) > stall_s:
            return f"stalled: the flow has not polled its source for {quiet:.0f} s"
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
        self._answer: str | None = None
        self._at = float("-inf")

    def reason(self) -> str | None:
        """None when ready, else the first failing check's reason."""
        with self._lock:
            if time.monotonic() - self._at > CACHE_S:
                self._answer = next(
                    (why for check in self._checks if (why := check()) is not None), None
                )
                self._at = time.monotonic()
            return self._answer
