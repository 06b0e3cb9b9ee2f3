"""The ingestion dataflow: ``python -m bytewax.run dataflows.rttm`` (also ``-w N``, ``-i/-a``).

Configured only by the environment (``RTTM_KAFKA_BROKERS``, ``RTTM_DATABASE_URL``,
``RTTM_TOPICS``, ``RTTM_TAIL``, ``RTTM_SHARDS``, ``RTTM_DEDUPE_CAPACITY``,
``RTTM_KAFKA_CONFIG``); the servers and the schema are checked, and where each partition
resumes is read from the database, before the flow is built; a problem ends the process with
one line. SIGINT and SIGTERM stop it cleanly, ending with one line. Under ``-r DIR``, keep
``RTTM_SHARDS`` the same or larger across restarts (``rttm ingest --recovery-dir`` checks it).
"""

from __future__ import annotations

import atexit
import sys

from rttm.core import logs, memory, safe_paths, stopping
from rttm.core.errors import RttmError
from rttm.core.stream import stats
from rttm.ingest import progress, prometheus
from rttm.ingest.flow import build_flow
from rttm.ingest.settings import from_env
from rttm.ops import cluster

memory.tune_malloc()  # before any thread: the pre-flight checks start librdkafka's
prometheus.register()  # served by Bytewax when BYTEWAX_DATAFLOW_API_ENABLED=true
try:
    logs.setup()
    safe_paths.check_bytewax_recovery(sys.argv)
    _settings = from_env()
    flow = build_flow(_settings)
except RttmError as exc:
    logs.write(f"rttm: error: {exc}", "ERROR")
    sys.exit(1)


def _say_where_it_stopped() -> None:
    received = stopping.received()
    if received is not None:
        summary = progress.ProgressLine().stop()
        names = [spec.name for spec in _settings.topics]
        line = progress.stopped(summary, received, _settings.database_url, names)
        logs.write(line)


stopping.install()
try:  # in a cluster: the own address checked, and a peer that never comes is not waited for
    cluster.guard(sys.argv[1:], lambda: stats.COUNTERS.began)
except RttmError as exc:
    logs.write(f"rttm: error: {exc}", "ERROR")
    sys.exit(1)
atexit.register(_say_where_it_stopped)
