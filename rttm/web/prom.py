"""``/metrics`` of ``rttm serve``: platform metrics and RTTM's health, for Prometheus.

Read from PostgreSQL on each scrape, so any number of servers show the same:

* ``rttm_<metric>{labels}`` — every series of the last 15 minutes of metrics windows, as of
  the newest window (``rttm_metrics_window_end_seconds``): a state (lag, status, depth,
  latency) keeps its latest value; a per-window count or rate absent from the newest window
  is 0 there (the engine writes no row for "nothing happened");
* ``rttm_ingest_position{topic}`` — messages the ingestion has durably written per topic
  (a counter: ``rate()`` of it is the ingestion rate);
* ``rttm_ingest_rejects`` — malformed messages kept in ``rttm_ingest_rejects`` (the
  planner's estimate, refreshed by autovacuum);
* ``rttm_stuck_trades_open`` and ``rttm_alerts_firing``.

The ingestion process's own counters (rows written, sink retries, lag) are served by the
flow itself: ``--metrics-port`` or ``BYTEWAX_DATAFLOW_API_ENABLED=true``
(see :mod:`rttm.ingest.stats`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rttm.metrics.points import SERIES_PREFIX
from rttm.views.alerts import active
from rttm.views.common import open_view

_SERIES = """
WITH newest AS (SELECT max(window_start) AS start FROM rttm_metrics)
SELECT DISTINCT ON (metric, labels) metric, labels, value, window_start = newest.start AS now,
       extract(epoch FROM newest.start) AS newest_start,
       extract(epoch FROM window_end - window_start) AS length
FROM rttm_metrics, newest
WHERE window_start > newest.start - interval '15 minutes'
ORDER BY metric, labels, window_start DESC
"""
#: Metrics that describe a state: their latest value stands until a newer one.
STATES = frozenset({
    "queue_lag", "queue_lag_seconds", "consume_rate", "consumer_status",
    "time_to_data_loss_seconds", "dlq_depth", "dlq_depth_by_reason", "hop_latency_ms",
    "e2e_latency_ms",
})  # fmt: skip
#: Each shard records its own position per partition; the partition's durable position is
#: the least of them (as the offset committer takes it).
_POSITIONS = """
SELECT topic, sum(position) AS position FROM (
    SELECT topic, kafka_partition, min(next_offset) AS position
    FROM rttm_ingest_progress GROUP BY topic, kafka_partition
) partitions GROUP BY topic
"""
#: The planner's row estimate: exact counting would read the whole table on every scrape.
_REJECTS = (
    "SELECT greatest(reltuples, 0) AS n FROM pg_class WHERE oid = 'rttm_ingest_rejects'::regclass"
)
_STUCK = "SELECT count(*) AS n FROM rttm_stuck_trades WHERE recovered_at IS NULL"
PREFIX = SERIES_PREFIX


class DatabaseCollector(Collector):
    """Collects from the database at ``url`` on every scrape."""

    def __init__(self, url: str) -> None:
        self._url = url

    def collect(self) -> Iterator[Metric]:
        """The families described in the module docstring."""
        with open_view(self._url) as conn:
            rows = conn.execute(_SERIES).fetchall()
            families: dict[str, GaugeMetricFamily] = {}
            for row in rows:
                labels = dict(sorted(row["labels"].items()))
                family = families.get(row["metric"])
                if family is None:
                    family = families[row["metric"]] = GaugeMetricFamily(
                        PREFIX + row["metric"], f"RTTM metric {row['metric']}",
                        labels=list(labels),
                    )  # fmt: skip
                current = row["now"] or row["metric"] in STATES
                family.add_metric(list(labels.values()), row["value"] if current else 0.0)
            yield from families.values()
            if rows:
                end = float(rows[0]["newest_start"]) + float(rows[0]["length"])
                yield GaugeMetricFamily("rttm_metrics_window_end_seconds",
                                        "End of the newest metrics window (Unix time)",
                                        value=end)  # fmt: skip
            position = CounterMetricFamily(
                "rttm_ingest_position", "Messages durably ingested per topic", labels=["topic"]
            )
            for row in conn.execute(_POSITIONS).fetchall():
                position.add_metric([row["topic"]], float(row["position"]))
            yield position
            rejects = conn.execute(_REJECTS).fetchone()
            yield GaugeMetricFamily("rttm_ingest_rejects", "Malformed messages kept (estimate)",
                                    value=float(rejects["n"] if rejects else 0))  # fmt: skip
            stuck = conn.execute(_STUCK).fetchone()
            yield GaugeMetricFamily("rttm_stuck_trades_open", "Trades stuck now",
                                    value=float(stuck["n"] if stuck else 0))  # fmt: skip
            firing = GaugeMetricFamily("rttm_alerts_firing", "Firing alerts per rule",
                                       labels=["rule", "severity"])  # fmt: skip
            counts: dict[tuple[str, str], int] = {}
            for alert in active(conn)["firing"]:
                key = (alert["rule"], alert["severity"])
                counts[key] = counts.get(key, 0) + 1
            for (rule, severity), count in sorted(counts.items()):
                firing.add_metric([rule, severity], count)
            yield firing
