"""Say once that a server became unavailable, and once that it is back, per process.

Many parts of a flow (partitions, shards) notice the same outage on their own; the
operator wants one line when it starts and one when it ends, not one per part or retry.
"""

from __future__ import annotations

import logging
import threading
import time


class OutageLog:
    """Outage state of one server (``what``), shared by every part of a process."""

    def __init__(self, logger: logging.Logger, what: str, retrying: str) -> None:
        self._logger, self._what, self._retrying = logger, what, retrying
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def active(self) -> bool:
        """Whether an outage is going on (lost, and not back since)."""
        with self._lock:
            return self._since is not None

    def lost(self, reason: str) -> None:
        """A part met the outage; the first one logs it."""
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
                self._logger.warning("%s unavailable: %s; %s", self._what, reason, self._retrying)

    def back(self) -> None:
        """A part got through again; logs the end of the outage if one was logged."""
        with self._lock:
            if self._since is not None:
                self._logger.warning(
                    "%s back after %.1f s", self._what, time.monotonic() - self._since
                )
                self._since = None
