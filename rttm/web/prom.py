"""``/metrics`` of ``rttm serve``: platform metrics and RTTM's health, for Prometheus.

Read from PostgreSQL on each scrape, so any number of servers show the same. The families,
named and described by :mod:`rttm.core.metric_catalogue`:

* counters ``rttm_<count>_total`` (trade events, trades started/completed/rejected, errors,
  DLQ events, log events, RTTM's own bookkeeping): every window's counts added up since the
  counters' table was created (``rttm_metrics_totals``); ``rate()`` and ``increase()`` of
  them replace the engine's per-window rates and ratios, which are not exposed;
* gauges of states (queue lag, consumer status, time to data loss, DLQ depth, stuck
  trades) as of the newest window (``rttm_metrics_window_end_seconds``) among those of the
  last 15 minutes: a lasting state keeps its latest value; stuck trades absent from the
  newest window are 0 there;
* summaries ``rttm_hop_latency_seconds`` and ``rttm_e2e_latency_seconds``: the quantiles
  (``quantile="0.5"``, ``"0.95"``, ``"0.99"``) of the newest window with latencies;
* ``rttm_queue_consumed_offset`` and ``rttm_queue_produced_offset`` per (service, topic,
  partition): the newest snapshot's offsets (``rate()`` of the consumed one is the consume
  rate);
* ``rttm_serve_series_omitted{metric}`` — the series of each family left out by the cap:
  at most ``max_series`` per family (``rttm serve --max-series``, default 2,000), the most
  urgent first (``metric="alerts_firing"`` for the rules of ``rttm_alerts_firing``);
* ``rttm_ingest_position_total{topic}`` — messages the ingestion has durably written per
  topic (``rate()`` of it is the ingestion rate);
* ``rttm_ingest_rejects`` — malformed messages kept in ``rttm_ingest_rejects`` (the
  planner's estimate, refreshed by autovacuum);
* ``rttm_stuck_trades_open`` and ``rttm_alerts_firing``.

The ingestion process's own counters (rows written, sink retries, lag) are served by the
flow itself: ``--metrics-port`` or ``BYTEWAX_DATAFLOW_API_ENABLED=true``
(see :mod:`rttm.ingest.stats`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rttm.alerts.stored import LATEST_PER_SERIES
from rttm.core import metric_catalogue as catalogue
from rttm.core.db.connect import DictConn
from rttm.core.metric_catalogue import Kind
from rttm.core.registry import BY_NAME
from rttm.metrics.limits import LEAST_FIRST, STATES
from rttm.views.budget import DEFAULT_BUDGET_S, Deadline
from rttm.views.common import open_view
from rttm.views.limits import DEFAULT_MAX_SERIES
from rttm_emit.topics import QUEUE_METRICS

#: The latest value of each series of the last 15 minutes (the greatest ``[epoch, value]``
#: pair: a hash aggregate, where ``DISTINCT ON`` would sort the jsonb labels), at most
#: ``%(cap)s`` per metric: the most urgent first (the highest values, most lag, most errors;
#: the least time to data loss), ties in a fixed
#: order (the labels' hash, then the labels); ``total``: how many series the metric has.
_SERIES = """
WITH newest AS (SELECT max(window_start) AS start FROM rttm_metrics),
latest AS (
    SELECT metric, labels, max(ARRAY[extract(epoch FROM window_start)::float8, value]) AS last
    FROM rttm_metrics WHERE window_start > (SELECT start FROM newest) - interval '15 minutes'
      AND metric = ANY(%(shown)s)
    GROUP BY metric, labels
),
shown AS (
    SELECT metric, labels,
           CASE WHEN last[1] = (SELECT extract(epoch FROM start)::float8 FROM newest)
                     OR metric = ANY(%(states)s) THEN last[2]
                ELSE 0 END AS value
    FROM latest
),
ranked AS (
    SELECT shown.*, count(*) OVER (PARTITION BY metric) AS total,
           row_number() OVER (PARTITION BY metric
                              ORDER BY CASE WHEN metric = ANY(%(least_first)s) THEN value
                                            ELSE -value END,
                                       jsonb_hash(labels), labels) AS n
    FROM shown
)
SELECT metric, labels, value, total FROM ranked WHERE n <= %(cap)s ORDER BY metric, n
"""
#: The counters, the largest first (ties in label order), at most ``%(cap)s`` per metric.
_TOTALS = """
SELECT metric, labels, value, total FROM (
    SELECT metric, labels, value, count(*) OVER (PARTITION BY metric) AS total,
           row_number() OVER (PARTITION BY metric ORDER BY value DESC, labels) AS n
    FROM rttm_metrics_totals
) ranked WHERE n <= %(cap)s ORDER BY metric, n
"""
#: Each queue partition's newest snapshot of the last 15 minutes (the index of migration
#: 0001 gives the newest per partition), at most ``%(cap)s``: the most lag first.
_OFFSETS = """
WITH newest AS (SELECT max(snapshot_time) AS at FROM {table}),
latest AS (
    SELECT DISTINCT ON (service_name, topic_name, queue_partition)
           service_name, topic_name, queue_partition, produced_offset, consumed_offset
    FROM {table} WHERE snapshot_time > (SELECT at FROM newest) - interval '15 minutes'
    ORDER BY service_name, topic_name, queue_partition, snapshot_time DESC
)
SELECT *, count(*) OVER () AS total FROM latest
ORDER BY produced_offset - consumed_offset DESC, service_name, topic_name, queue_partition
LIMIT %(cap)s
""".format(table=BY_NAME[QUEUE_METRICS.name].table)  # noqa: S608 - the registry's table name
_WINDOW_END = (
    "SELECT extract(epoch FROM window_end) AS end FROM rttm_metrics"
    " ORDER BY window_start DESC LIMIT 1"
)
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
#: Firing alerts counted per (rule, severity) in the database: the rules with most first.
_FIRING = f"""
SELECT rule, severity, count(*) AS n, count(*) OVER () AS total
FROM ({LATEST_PER_SERIES}) latest WHERE state = 'firing'
GROUP BY rule, severity ORDER BY n DESC, rule, severity LIMIT %(cap)s
"""  # noqa: S608 - a constant column list, no input
#: The metrics read from the newest windows: states and latencies (the counts are added up
#: in ``rttm_metrics_totals``; rates and ratios are not exposed).
_SHOWN = sorted(
    name for name, spec in catalogue.METRICS.items() if spec.exposed and spec.kind is not Kind.COUNT
)
OMITTED = "rttm_serve_series_omitted"
#: Rows turned into samples between two looks at the deadline.
_CHECK_EVERY = 1_000


class DatabaseCollector(Collector):
    """Collects from the database at ``url`` on every scrape, within ``budget_s`` seconds.

    At most ``max_series`` series per family; ``rttm_serve_series_omitted{metric}`` says how
    many more there were.
    """

    def __init__(
        self, url: str, max_series: int = DEFAULT_MAX_SERIES, budget_s: float = DEFAULT_BUDGET_S
    ) -> None:
        self._url = url
        self._max_series = max_series
        self._budget_s = budget_s

    def collect(self) -> Iterator[Metric]:
        """The families described in the module docstring."""
        deadline = Deadline(self._budget_s, "metrics")
        omitted = GaugeMetricFamily(
            OMITTED,
            "Series of a metric left out of /metrics (rttm serve --max-series)",
            labels=["metric"],
        )
        with open_view(self._url) as conn:
            yield from self._states(conn, deadline, omitted)
            yield from self._counters(conn, deadline, omitted)
            yield from self._offsets(conn, deadline, omitted)
            position = CounterMetricFamily(
                "rttm_ingest_position", "Messages durably ingested per topic", labels=["topic"]
            )
            for row in deadline.execute(conn, _POSITIONS):
                position.add_metric([row["topic"]], float(row["position"]))
            yield position
            rejects = deadline.execute(conn, _REJECTS)
            yield GaugeMetricFamily(
                "rttm_ingest_rejects",
                "Malformed messages kept (estimate)",
                value=float(rejects[0]["n"] if rejects else 0),
            )
            stuck = deadline.execute(conn, _STUCK)
            yield GaugeMetricFamily(
                "rttm_stuck_trades_open",
                "Trades stuck now",
                value=float(stuck[0]["n"] if stuck else 0),
            )
            yield self._firing(conn, deadline, omitted)
            yield omitted
            deadline.check()

    def _families(
        self,
        kinds: tuple[Kind, ...],
        rows: list[dict[str, Any]],
        deadline: Deadline,
        omitted: GaugeMetricFamily,
    ) -> Iterator[Metric]:
        """A family per catalogue metric of ``kinds``, filled from ``rows``.

        Declared even while it has no series, so that its help text is there; counts the
        series left out in ``omitted``.
        """
        families: dict[str, Metric] = {}
        totals: dict[str, int] = {}
        for spec in catalogue.METRICS.values():
            if spec.kind in kinds:
                families[spec.name] = Metric(spec.family, spec.help, spec.prometheus_type)
                totals[spec.name] = 0
        for n, row in enumerate(rows):
            if n % _CHECK_EVERY == 0:
                deadline.check()
            found = catalogue.METRICS.get(row["metric"])
            if found is None or found.name not in families:
                continue  # written by a newer RTTM: not in this catalogue
            spec = found
            totals[spec.name] = int(row["total"])
            labels = {name: str(value) for name, value in row["labels"].items()}
            value = float(row["value"])
            if spec.kind is Kind.LATENCY:
                labels["quantile"] = catalogue.quantile(labels.get("quantile", ""))
                value /= 1000  # stored in milliseconds
            suffix = "_total" if spec.kind is Kind.COUNT else ""
            families[spec.name].add_sample(
                spec.family + suffix, dict(sorted(labels.items())), value
            )
        for name, family in families.items():
            if family.samples:
                omitted.add_metric([name], float(totals[name] - len(family.samples)))
        yield from families.values()

    def _states(
        self, conn: DictConn, deadline: Deadline, omitted: GaugeMetricFamily
    ) -> Iterator[Metric]:
        """Gauges and latency summaries of the newest windows, and the newest window's end."""
        rows = deadline.execute(
            conn,
            _SERIES,
            {
                "states": sorted(STATES),
                "least_first": sorted(LEAST_FIRST),
                "cap": self._max_series,
                "shown": _SHOWN,
            },
        )
        yield from self._families((Kind.STATE, Kind.LATENCY), rows, deadline, omitted)
        end = deadline.execute(conn, _WINDOW_END)
        if end:
            yield GaugeMetricFamily(
                "rttm_metrics_window_end_seconds",
                "End of the newest metrics window (Unix time)",
                value=float(end[0]["end"]),
            )

    def _counters(
        self, conn: DictConn, deadline: Deadline, omitted: GaugeMetricFamily
    ) -> Iterator[Metric]:
        """``rttm_<count>_total``: the per-window counts added up."""
        rows = deadline.execute(conn, _TOTALS, {"cap": self._max_series})
        yield from self._families((Kind.COUNT,), rows, deadline, omitted)

    def _offsets(
        self, conn: DictConn, deadline: Deadline, omitted: GaugeMetricFamily
    ) -> Iterator[Metric]:
        """The newest snapshot's consumed and produced offset of each queue partition."""
        labels = ["service", "topic", "partition"]
        consumed = GaugeMetricFamily(
            catalogue.CONSUMED_OFFSET, "Offset consumed up to (newest snapshot)", labels=labels
        )
        produced = GaugeMetricFamily(
            catalogue.PRODUCED_OFFSET,
            "End offset of the partition (newest snapshot)",
            labels=labels,
        )
        rows = deadline.execute(conn, _OFFSETS, {"cap": self._max_series})
        for row in rows:
            where = [row["service_name"], row["topic_name"], str(row["queue_partition"])]
            consumed.add_metric(where, float(row["consumed_offset"]))
            produced.add_metric(where, float(row["produced_offset"]))
        omitted.add_metric(["queue_offsets"], _left_out(rows))
        yield consumed
        yield produced

    def _firing(self, conn: DictConn, deadline: Deadline, omitted: GaugeMetricFamily) -> Metric:
        """``rttm_alerts_firing{rule, severity}``, counted in the database."""
        firing = GaugeMetricFamily(
            "rttm_alerts_firing", "Firing alerts per rule", labels=["rule", "severity"]
        )
        rows = deadline.execute(conn, _FIRING, {"cap": self._max_series})
        for row in sorted(rows, key=lambda r: (r["rule"], r["severity"])):
            firing.add_metric([row["rule"], row["severity"]], float(row["n"]))
        omitted.add_metric(["alerts_firing"], _left_out(rows))
        return firing


def _left_out(rows: list[dict[str, Any]]) -> float:
    """How many of a capped query's rows (each carrying the ``total``) were left out."""
    return float(int(rows[0]["total"]) - len(rows)) if rows else 0.0
