"""The metrics and alerts dataflow: ``python -m bytewax.run dataflows.metrics`` (``-w``, ``-r``).

Configured by the environment like the ingestion (``RTTM_KAFKA_BROKERS``,
``RTTM_DATABASE_URL``, ``RTTM_TAIL``, ``RTTM_KAFKA_CONFIG``) plus ``RTTM_PIPELINE``,
``RTTM_ALERT_RULES``, ``RTTM_METRICS_WINDOW``, ``RTTM_METRICS_LATENESS`` and
``RTTM_METRICS_SHARDS``; a problem ends the process with one line. SIGINT and SIGTERM stop
it cleanly (open windows stay in the state), ending with one line. Under ``-r DIR``, keep
the window and the shard count the same across restarts.
"""

from __future__ import annotations

import atexit
import sys

from rttm.core import logs, safe_paths, stopping
from rttm.core.errors import RttmError
from rttm.core.stream import stats
from rttm.metrics import prometheus
from rttm.metrics.flow import build_flow
from rttm.metrics.progress import MetricsLine
from rttm.metrics.settings import from_env
from rttm.ops import cluster

prometheus.register()  # served by Bytewax when BYTEWAX_DATAFLOW_API_ENABLED=true
try:
    logs.setup()
    safe_paths.check_bytewax_recovery(sys.argv)
    flow = build_flow(from_env())
except RttmError as exc:
    logs.write(f"rttm: error: {exc}", "ERROR")
    sys.exit(1)


def _say_where_it_stopped() -> None:
    received = stopping.received()
    if received is not None:
        line = f"{MetricsLine().stop()} | stopped on {received.name}"
        logs.write(line)


stopping.install()
try:  # in a cluster: the own address checked, and a peer that never comes is not waited for
    cluster.guard(sys.argv[1:], lambda: stats.COUNTERS.began)
except RttmError as exc:
    logs.write(f"rttm: error: {exc}", "ERROR")
    sys.exit(1)
atexit.register(_say_where_it_stopped)
