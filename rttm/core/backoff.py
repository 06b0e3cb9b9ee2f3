"""The one backoff of both flows' sinks: doubling waits while a server is away.

Both sinks hold a batch until it is written (PostgreSQL, :mod:`rttm.core.db.retry`) or
acknowledged (the alert events on Kafka, :mod:`rttm.metrics.store`), waiting between
attempts from ``BACKOFF_START_S`` up to ``BACKOFF_CAP_S``, for as long as it takes.
"""

from __future__ import annotations

import time

from rttm.core import stopping

#: First and longest wait between attempts while a server is away.
BACKOFF_START_S = 0.2
BACKOFF_CAP_S = 5.0


class Backoff:
    """The waits of one batch's attempts: each twice the last, capped."""

    def __init__(self) -> None:
        self._delay = BACKOFF_START_S

    def pause(self) -> None:
        """Wait the current delay, then double it (up to the cap).

        A stop asked for meanwhile cuts the wait short; the caller has already said whether
        this process may act on it (:func:`rttm.core.stopping.abandon`), so a process that may
        not still waits the whole delay rather than retrying at once.
        """
        if stopping.wait(self._delay):
            time.sleep(self._delay)
        self._delay = min(self._delay * 2, BACKOFF_CAP_S)
