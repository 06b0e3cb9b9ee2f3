"""Logging set-up for RTTM's long-running processes (the dataflows, ``rttm ingest``)."""

from __future__ import annotations

import logging


def setup(level: int = logging.INFO) -> None:
    """Timestamped lines on stderr, unless the host application configured logging already.

    librdkafka's per-connection log lines are muted: RTTM's source and sink say once when a
    server becomes unavailable and once when it is back.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("rttm.kafka").setLevel(logging.CRITICAL)
