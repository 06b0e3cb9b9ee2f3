"""The ingestion dataflow: ``python -m bytewax.run dataflows.rttm`` (also ``-w N``, ``-i/-a``).

Configured only by the environment (``RTTM_KAFKA_BROKERS``, ``RTTM_DATABASE_URL``,
``RTTM_TOPICS``, ``RTTM_TAIL``, ``RTTM_SHARDS``, ``RTTM_DEDUPE_CAPACITY``,
``RTTM_KAFKA_CONFIG``); the servers and the schema are checked before the flow is built,
and a problem ends the process with one line. Under ``-r DIR``, keep ``RTTM_SHARDS`` the
same or larger across restarts (``rttm ingest --recovery-dir`` checks it for you).
"""

from __future__ import annotations

import sys

from rttm import logs
from rttm.errors import RttmError
from rttm.ingest import prometheus
from rttm.ingest.flow import build_flow
from rttm.ingest.settings import from_env

logs.setup()
prometheus.register()  # served by Bytewax when BYTEWAX_DATAFLOW_API_ENABLED=true
try:
    flow = build_flow(from_env())
except RttmError as exc:
    sys.exit(f"rttm: error: {exc}")
