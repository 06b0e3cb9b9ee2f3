"""``/metrics`` of ``rttm serve``: platform metrics and RTTM's health, for Prometheus.

Read from PostgreSQL on each scrape, so any number of servers show the same:

* ``rttm_<metric>{labels}`` — the series of the last 15 minutes of metrics windows, as of
  the newest window (``rttm_metrics_window_end_seconds``): a state (lag, status, depth,
  latency) keeps its latest value; a per-window count or rate absent from the newest window
  is 0 there (the engine writes no row for "nothing happened"). At most ``max_series`` per
  metric (``rttm serve --max-series``, default 2,000), the highest values first;
* ``rttm_serve_series_omitted{metric}`` — the series of each metric left out by that cap
  (``metric="alerts_firing"`` for the rules of ``rttm_alerts_firing``);
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

from rttm.alerts.stored import LATEST_PER_SERIES
from rttm.metrics.limits import LEAST_FIRST, STATES
from rttm.metrics.points import SERIES_PREFIX
from rttm.views.budget import DEFAULT_BUDGET_S, Deadline
from rttm.views.common import Conn, open_view
from rttm.views.limits import DEFAULT_MAX_SERIES

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
PREFIX = SERIES_PREFIX
OMITTED = "rttm_serve_series_omitted"
#: Rows turned into samples between two looks at the deadline.
_CHECK_EVERY = 1_000


class DatabaseCollector(Collector):
    """Collects from the database at ``url`` on every scrape, within ``budget_s`` seconds.

    At most ``max_series`` series per metric; ``rttm_serve_series_omitted{metric}`` says how
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
            OMITTED, "Series of a metric left out of /metrics (rttm serve --max-series)",
            labels=["metric"],
        )  # fmt: skip
        with open_view(self._url) as conn:
            yield from self._series(conn, deadline, omitted)
            position = CounterMetricFamily(
                "rttm_ingest_position", "Messages durably ingested per topic", labels=["topic"]
            )
            for row in deadline.execute(conn, _POSITIONS):
                position.add_metric([row["topic"]], float(row["position"]))
            yield position
            rejects = deadline.execute(conn, _REJECTS)
            yield GaugeMetricFamily("rttm_ingest_rejects", "Malformed messages kept (estimate)",
                                    value=float(rejects[0]["n"] if rejects else 0))  # fmt: skip
            stuck = deadline.execute(conn, _STUCK)
            yield GaugeMetricFamily("rttm_stuck_trades_open", "Trades stuck now",
                                    value=float(stuck[0]["n"] if stuck else 0))  # fmt: skip
            yield self._firing(conn, deadline, omitted)
            yield omitted
            deadline.check()

    def _series(
        self, conn: Conn, deadline: Deadline, omitted: GaugeMetricFamily
    ) -> Iterator[Metric]:
        """``rttm_<metric>`` families (counting the series left out) and the newest window."""
        rows = deadline.execute(conn, _SERIES, {
            "states": sorted(STATES), "least_first": sorted(LEAST_FIRST), "cap": self._max_series,
        })  # fmt: skip
        families: dict[str, GaugeMetricFamily] = {}
        totals: dict[str, int] = {}
        for n, row in enumerate(rows):
            if n % _CHECK_EVERY == 0:
                deadline.check()
            labels = dict(sorted(row["labels"].items()))
            family = families.get(row["metric"])
            if family is None:
                family = families[row["metric"]] = GaugeMetricFamily(
                    PREFIX + row["metric"], f"RTTM metric {row['metric']}", labels=list(labels)
                )
                totals[row["metric"]] = int(row["total"])
            family.add_metric(list(labels.values()), row["value"])
        for metric, family in families.items():
            omitted.add_metric([metric], float(totals[metric] - len(family.samples)))
        yield from families.values()
        end = deadline.execute(conn, _WINDOW_END)
        if end:
            yield GaugeMetricFamily("rttm_metrics_window_end_seconds",
                                    "End of the newest metrics window (Unix time)",
                                    value=float(end[0]["end"]))  # fmt: skip

    def _firing(self, conn: Conn, deadline: Deadline, omitted: GaugeMetricFamily) -> Metric:
        """``rttm_alerts_firing{rule, severity}``, counted in the database."""
        firing = GaugeMetricFamily("rttm_alerts_firing", "Firing alerts per rule",
                                   labels=["rule", "severity"])  # fmt: skip
        rows = deadline.execute(conn, _FIRING, {"cap": self._max_series})
        for row in sorted(rows, key=lambda r: (r["rule"], r["severity"])):
            firing.add_metric([row["rule"], row["severity"]], float(row["n"]))
        left = int(rows[0]["total"]) - len(rows) if rows else 0
        omitted.add_metric(["alerts_firing"], float(left))
        return firing
