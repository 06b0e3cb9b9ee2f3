"""The SQL of the status view: one query per section, aggregated and capped in PostgreSQL.

Each reads one metric (or a few, every name checked against the catalogue) over
``window_start > %(since)s``: a range of the primary key (metric, window_start, labels). A
state (lag, status, depth, latency) is the latest value of each label set; a count is summed
over the period. Both group by hashing: the latest value is the greatest ``[epoch, value]``
pair of its label set, where ``DISTINCT ON (labels)`` would sort jsonb, five times slower on
a flood of label sets. A capped section returns at most ``%(cap)s`` rows, worst first with a
deterministic tie-break, each with ``total``: how many the section holds (``count(*) OVER
()`` after grouping).
"""

from __future__ import annotations

from typing import Final, LiteralString

from rttm.core.metric_catalogue import named

#: The metrics read by name (not through :func:`_latest`), checked against the catalogue.
_CONSUME_RATE: Final = named("consume_rate")
_DLQ_EVENTS: Final = named("dlq_events")
_DLQ_RATE: Final = named("dlq_rate")
_ERRORS: Final = named("errors")
_ERROR_RATE: Final = named("error_rate")
_LOG_EVENTS: Final = named("log_events")
_QUEUE_LAG_SECONDS: Final = named("queue_lag_seconds")
_TIME_TO_DATA_LOSS_SECONDS: Final = named("time_to_data_loss_seconds")
_TPS: Final = named("tps")

NEWEST: Final = (
    "SELECT window_start, window_end FROM rttm_metrics ORDER BY window_start DESC LIMIT 1"
)


def _latest(metric: LiteralString, keys: LiteralString) -> LiteralString:
    """The latest ``value`` of each label set of ``metric`` in the period, with ``keys``."""
    metric = named(metric)
    return f"""
    SELECT {keys}, (max(ARRAY[extract(epoch FROM window_start)::float8, value]))[2] AS value
    FROM rttm_metrics WHERE metric = '{metric}' AND window_start > %(since)s GROUP BY labels
    """  # noqa: S608 - constant names, no input


TPS_SERIES: Final = f"""
SELECT window_start, sum(value) AS value FROM rttm_metrics
WHERE metric = '{_TPS}' AND window_start > %(since)s GROUP BY window_start ORDER BY window_start
"""  # noqa: S608 - catalogue names, no input
#: Busiest services first; ``now`` is their TPS in the newest TPS window (``%(last)s``).
TPS_BY_SERVICE: Final = f"""
SELECT labels->>'service' AS service, sum(value) AS total,
       coalesce(sum(value) FILTER (WHERE window_start = %(last)s), 0) AS now,
       count(*) OVER () AS total_rows
FROM rttm_metrics WHERE metric = '{_TPS}' AND window_start > %(since)s
GROUP BY 1 ORDER BY total DESC, service LIMIT %(cap)s
"""  # noqa: S608 - catalogue names, no input
#: The status screen's trade counts (its keys) and the metric of each.
TRADE_COUNTS: Final = {
    key: named(f"trades_{key}") for key in ("started", "completed", "rejected", "untracked")
}
TRADES: Final = """
SELECT metric, sum(value) AS value FROM rttm_metrics
WHERE metric = ANY(%(metrics)s) AND window_start > %(since)s GROUP BY metric
"""
E2E: Final = f"""
SELECT quantile, value FROM ({_latest("e2e_latency_ms", "labels->>'quantile' AS quantile")})
latest ORDER BY quantile LIMIT %(cap)s
"""  # noqa: S608 - constant names, no input
_HOP: Final = """labels->>'from_stage' AS from_stage, labels->>'to_stage' AS to_stage,
    coalesce(labels->>'quantile', '') AS quantile"""
#: Slowest hops first (their highest quantile), each with its quantiles.
HOPS: Final = f"""
WITH latest AS ({_latest("hop_latency_ms", _HOP)})
SELECT from_stage, to_stage, (array_agg(quantile ORDER BY quantile))[1:%(cap)s] AS quantiles,
       (array_agg(value ORDER BY quantile))[1:%(cap)s] AS vals, count(*) OVER () AS total_rows
FROM latest GROUP BY from_stage, to_stage
ORDER BY max(value) DESC, from_stage, to_stage LIMIT %(cap)s
"""  # noqa: S608 - constant names, no input
_CONSUMER: Final = "labels->>'service' AS service, labels->>'topic' AS topic"
_PARTITION: Final = _CONSUMER + ", labels->>'partition' AS partition"
#: Worst consumers first (status, then lag), each with its worst partitions (most lag). The
#: status and the lag of every consumer rank them; the other metrics are read for the
#: consumers shown only.
CONSUMERS: Final = f"""
WITH lag_now AS ({_latest("queue_lag", _PARTITION)}),
sums AS (
    SELECT service, topic, sum(trunc(value)) AS lag, count(*) AS partitions
    FROM lag_now GROUP BY service, topic
),
states AS (
    SELECT service, topic, least(greatest(trunc(value), 0), 3)::int AS status
    FROM ({_latest("consumer_status", _CONSUMER)}) latest
),
shown AS (
    SELECT c.service, c.topic, c.status, coalesce(s.lag, 0) AS lag,
           coalesce(s.partitions, 0) AS partitions, count(*) OVER () AS total_rows
    FROM states c LEFT JOIN sums s USING (service, topic)
    ORDER BY c.status DESC, lag DESC, c.service, c.topic LIMIT %(cap)s
),
extra AS (
    SELECT metric, {_PARTITION},
           (max(ARRAY[extract(epoch FROM window_start)::float8, value]))[2] AS value
    FROM rttm_metrics
    WHERE metric IN ('{_QUEUE_LAG_SECONDS}', '{_CONSUME_RATE}', '{_TIME_TO_DATA_LOSS_SECONDS}')
      AND window_start > %(since)s
      AND (labels->>'service', labels->>'topic') IN (SELECT service, topic FROM shown)
    GROUP BY metric, labels
),
parts AS (
    SELECT l.service, l.topic, l.partition, l.value AS lag, s.value AS lag_seconds,
           r.value AS consume_rate,
           row_number() OVER (PARTITION BY l.service, l.topic
                              ORDER BY l.value DESC, length(l.partition), l.partition) AS n
    FROM lag_now l JOIN shown c ON c.service = l.service AND c.topic = l.topic
    LEFT JOIN extra s ON s.metric = '{_QUEUE_LAG_SECONDS}' AND s.service = l.service
         AND s.topic = l.topic AND s.partition = l.partition
    LEFT JOIN extra r ON r.metric = '{_CONSUME_RATE}' AND r.service = l.service
         AND r.topic = l.topic AND r.partition = l.partition
)
SELECT c.service, c.topic, c.status, c.lag, c.partitions, c.total_rows, loss.value AS loss,
       coalesce(max(coalesce(p.lag_seconds, 0)), 0) AS lag_seconds,
       array_agg(p.partition ORDER BY p.n) FILTER (WHERE p.n <= %(cap)s) AS p_names,
       array_agg(p.lag ORDER BY p.n) FILTER (WHERE p.n <= %(cap)s) AS p_lags,
       array_agg(p.lag_seconds ORDER BY p.n) FILTER (WHERE p.n <= %(cap)s) AS p_seconds,
       array_agg(p.consume_rate ORDER BY p.n) FILTER (WHERE p.n <= %(cap)s) AS p_rates
FROM shown c
LEFT JOIN parts p ON p.service = c.service AND p.topic = c.topic
LEFT JOIN extra loss ON loss.metric = '{_TIME_TO_DATA_LOSS_SECONDS}'
     AND loss.service = c.service AND loss.topic = c.topic
GROUP BY c.service, c.topic, c.status, c.lag, c.partitions, c.total_rows, loss.value
ORDER BY c.status DESC, c.lag DESC, c.service, c.topic
"""  # noqa: S608 - constant names, no input
#: Deepest dead-letter queues first.
DLQ_DEPTH: Final = f"""
SELECT topic, value, count(*) OVER () AS total_rows
FROM ({_latest("dlq_depth", "labels->>'topic' AS topic")}) latest
ORDER BY value DESC, topic LIMIT %(cap)s
"""  # noqa: S608 - constant names, no input
#: Dead-lettered messages per second in the newest window that has a rate.
DLQ_RATE: Final = f"""
SELECT sum(value) AS value FROM rttm_metrics
WHERE metric = '{_DLQ_RATE}' AND window_start = (
    SELECT max(window_start) FROM rttm_metrics
    WHERE metric = '{_DLQ_RATE}' AND window_start > %(since)s)
"""  # noqa: S608 - catalogue names, no input
DLQ_SERIES: Final = f"""
SELECT window_start, sum(value) AS value FROM rttm_metrics
WHERE metric = '{_DLQ_EVENTS}' AND window_start > %(since)s GROUP BY window_start
ORDER BY window_start
"""  # noqa: S608 - catalogue names, no input
#: Most dead-lettered reasons first.
DLQ_REASONS: Final = f"""
SELECT labels->>'topic' AS topic, labels->>'reason' AS reason, sum(value) AS events,
       count(*) OVER () AS total_rows
FROM rttm_metrics WHERE metric = '{_DLQ_EVENTS}' AND window_start > %(since)s
GROUP BY 1, 2 ORDER BY events DESC, topic, reason LIMIT %(cap)s
"""  # noqa: S608 - catalogue names, no input
#: Services with most errors first, with their error rate in the newest window (a rate is
#: written only for windows with errors: none there means 0).
ERRORS: Final = f"""
WITH shown AS (
    SELECT labels->>'service' AS service, sum(value) AS errors, count(*) OVER () AS total_rows
    FROM rttm_metrics WHERE metric = '{_ERRORS}' AND window_start > %(since)s
    GROUP BY 1 ORDER BY errors DESC, service LIMIT %(cap)s
)
SELECT shown.*, coalesce(r.value, 0) AS rate FROM shown
LEFT JOIN rttm_metrics r ON r.metric = '{_ERROR_RATE}' AND r.window_start = %(newest)s
     AND r.labels = jsonb_build_object('service', shown.service)
ORDER BY errors DESC, service
"""  # noqa: S608 - catalogue names, no input
#: The (service, level) pairs with most WARN/ERROR log events first.
LOGS: Final = f"""
SELECT labels->>'service' AS service, labels->>'level' AS level, sum(value) AS events,
       count(*) OVER () AS total_rows
FROM rttm_metrics WHERE metric = '{_LOG_EVENTS}' AND window_start > %(since)s
GROUP BY 1, 2 ORDER BY events DESC, service, level LIMIT %(cap)s
"""  # noqa: S608 - catalogue names, no input
#: The most recently stuck trades first.
STUCK: Final = """
SELECT trade_id, stage, service_name, last_event_type, last_event_time, detected_at
FROM rttm_stuck_trades WHERE recovered_at IS NULL
ORDER BY detected_at DESC, trade_id, last_event_time DESC LIMIT %(cap)s
"""
STUCK_COUNT: Final = "SELECT count(*) AS n FROM rttm_stuck_trades WHERE recovered_at IS NULL"
