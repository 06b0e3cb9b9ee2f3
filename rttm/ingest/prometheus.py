"""The ingestion process's own health for Prometheus, from :mod:`rttm.ingest.stats`.

Registered in the process's default registry by ``dataflows/rttm.py``, so Bytewax's API
server serves it (``BYTEWAX_DATAFLOW_API_ENABLED=true``, port 3030 on every address,
``/metrics``);
``rttm ingest --metrics-port PORT`` serves it on its own (``rttm.ops.metrics_port``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rttm.core.stream.stats import COUNTERS as SOURCE
from rttm.ingest.stats import COUNTERS


class IngestCollector(Collector):
    """Counters since the process started, and the lag of each partition read."""

    def collect(self) -> Iterator[Metric]:
        """Messages read, rows written, rejects, duplicates, sink retries, lag."""
        for name, value, about in (
            ("rttm_ingest_messages_read", SOURCE.read, "Messages read from Kafka"),
            ("rttm_ingest_rows_written", COUNTERS.rows, "Rows committed to PostgreSQL"),
            ("rttm_ingest_rejects_written", COUNTERS.rejects, "Malformed messages kept"),
            ("rttm_ingest_duplicates_dropped", COUNTERS.duplicates, "Repeats not written"),
            ("rttm_ingest_sink_retries", COUNTERS.retries, "Batches retried after an outage"),
        ):
            yield CounterMetricFamily(name, about, value=float(value))
        lag = GaugeMetricFamily(
            "rttm_ingest_lag_messages",
            "Messages behind each partition's end",
            labels=["topic", "partition"],
        )
        for topic, partition, behind in SOURCE.lag_by_partition():
            lag.add_metric([topic, str(partition)], float(behind))
        yield lag


_COLLECTOR = IngestCollector()


@functools.cache  # once per process: the registry refuses a second time
def register() -> None:
    """Add the collector to the default registry."""
    REGISTRY.register(_COLLECTOR)
