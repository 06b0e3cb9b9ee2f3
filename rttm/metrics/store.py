"""The metrics sink: windows, alerts and stuck trades to PostgreSQL; alerts to Kafka too.

Every row is keyed by event time (window start, alert activation, the trade's last event),
so a replay after a crash rewrites what it wrote before; a window's correction replaces its
count-type points (delete, then insert), after any points of the same batch. A batch is one
transaction, retried by the policy of ``rttm.core.db.retry`` (with backoff while the database is
away; a statement PostgreSQL refuses stops the flow instead: retrying it would never end).
Transitions are published after the commit and acknowledged before the batch is done:
at-least-once, keyed by rule, each carrying its idempotency key in a header. With receivers
configured, the same transaction writes the alert outbox, which a
:class:`~rttm.alerts.sender.Sender` per process delivers. Events the engine left uncounted
go to ``rttm_metrics_uncounted``. What a window's count rose above the most it was ever
counted at (``rttm_metrics_counted``) is added to ``rttm_metrics_totals`` in the same
transaction: Prometheus' counters, to which a replay adds nothing (migration 0009).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Producer

from rttm.alerts import outbox
from rttm.alerts.engine import Transition
from rttm.alerts.receivers import Delivery
from rttm.alerts.rules import Rule
from rttm.alerts.sender import Sender
from rttm.core import stopping
from rttm.core.backoff import BACKOFF_CAP_S, Backoff
from rttm.core.db.connect import sink_connection
from rttm.core.db.retry import Failure, Retry
from rttm.core.metric_catalogue import COUNTS
from rttm.core.outage import OutageLog
from rttm.core.registry import ALERT_EVENTS_TOPIC
from rttm.metrics.merge import CORRECTED, MetricsOutput
from rttm.metrics.points import Point, labels_of

_LOG = logging.getLogger(__name__)
#: The tables this sink writes (migrations 0005, 0007, 0008 and 0009).
TABLES = (
    "rttm_metrics",
    "rttm_alerts",
    "rttm_stuck_trades",
    "rttm_alert_outbox",
    "rttm_metrics_uncounted",
    "rttm_metrics_totals",
    "rttm_metrics_counted",
)
#: How long closing the sink waits for the broker to take the last alert events.
FLUSH_TIMEOUT_S = 10.0
OUTAGE = OutageLog(
    _LOG, "database", f"retrying every batch with backoff up to {BACKOFF_CAP_S:.0f} s"
)
KAFKA_OUTAGE = OutageLog(_LOG, "kafka (alert events)", "publishing again until acknowledged")

UPSERT_POINT = (
    "INSERT INTO rttm_metrics (metric, window_start, labels, window_end, value)"
    " VALUES (%s, %s, %s::jsonb, %s, %s)"
    " ON CONFLICT (metric, window_start, labels) DO UPDATE"
    " SET value = excluded.value, window_end = excluded.window_end, computed_at = now()"
)
#: A corrected window's points of the rewritten metrics, and their cardinality notes.
DELETE_CORRECTED = (
    "DELETE FROM rttm_metrics WHERE window_start = %(start)s AND (metric = ANY(%(metrics)s)"
    " OR (metric = 'cardinality_exceeded' AND labels->>'metric' = ANY(%(metrics)s)))"
)
#: The counts of the windows a batch touches, after its writes, with the most each was
#: ever counted at: their difference is what the batch adds to the counters.
COUNTS_OF_WINDOWS = (
    "SELECT m.metric, m.window_start, m.labels, m.value, coalesce(c.counted, 0)"
    " FROM rttm_metrics m LEFT JOIN rttm_metrics_counted c USING (metric, window_start, labels)"
    " WHERE m.window_start = ANY(%(starts)s) AND m.metric = ANY(%(metrics)s)"
)
MARK_COUNTED = (
    "INSERT INTO rttm_metrics_counted (metric, window_start, labels, counted)"
    " VALUES (%s, %s, %s::jsonb, %s) ON CONFLICT (metric, window_start, labels) DO UPDATE"
    " SET counted = greatest(rttm_metrics_counted.counted, excluded.counted)"
)
ADD_TO_TOTAL = (
    "INSERT INTO rttm_metrics_totals (metric, labels, value) VALUES (%s, %s::jsonb, %s)"
    " ON CONFLICT (metric, labels) DO UPDATE"
    " SET value = rttm_metrics_totals.value + excluded.value, updated_at = now()"
)
INSERT_UNCOUNTED = (
    "INSERT INTO rttm_metrics_uncounted (topic, kafka_partition, kafka_offset, event_time,"
    " reason) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
INSERT_TRANSITION = (
    "INSERT INTO rttm_alerts (rule, labels, started_at, state, at, value, severity, summary,"
    " resolved_at) VALUES (%s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (rule, labels, started_at, state) DO NOTHING"
)
INSERT_STUCK = (
    "INSERT INTO rttm_stuck_trades (trade_id, last_event_time, stage, service_name,"
    " last_event_type, detected_at) VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (trade_id, last_event_time) DO NOTHING"
)
MARK_RECOVERED = (
    "UPDATE rttm_stuck_trades SET recovered_at = %s"
    " WHERE trade_id = %s AND last_event_time = %s AND recovered_at IS NULL"
)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _point_row(p: Point) -> tuple[Any, ...]:
    return p.metric, p.window_start, outbox.labels_json(p.labels), p.window_end, p.value


def _count(
    cur: psycopg.Cursor[tuple[Any, ...]], touched: Mapping[str, Any]
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, float]]]:
    """The marks to raise and what to add to each counter, for the touched windows.

    Per window and label set, what its count rose above the most it was ever counted at;
    a label set seen for the first time gets a counter at 0, so that it exists (a counter
    never goes down).
    """
    if not touched["starts"]:
        return [], []
    cur.execute(COUNTS_OF_WINDOWS, touched)
    marks: list[tuple[Any, ...]] = []
    added: dict[tuple[str, str], float] = {}
    for metric, start, labels, value, counted in cur.fetchall():
        key = (metric, outbox.labels_json(labels_of(labels)))
        rise = max(value - counted, 0.0)
        if rise or not counted:
            added[key] = added.get(key, 0.0) + rise
        if value > counted:
            marks.append((metric, start, key[1], value))
    return marks, sorted((metric, labels, value) for (metric, labels), value in added.items())


class MetricsWriter:
    """One connection (and producer); writes :class:`MetricsOutput` batches durably."""

    def __init__(
        self,
        url: str,
        kafka_config: Mapping[str, Any] | None,
        delivery: Delivery | None = None,
        notified: Callable[[], None] = lambda: None,
    ) -> None:
        self._url = url
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._producer = Producer(dict(kafka_config)) if kafka_config is not None else None
        self._delivery = delivery
        self._notified = notified  # called after a commit that queued notifications

    def write(self, outputs: Sequence[MetricsOutput]) -> None:
        """Commit every row of ``outputs``, then publish their alert transitions."""
        if not outputs:
            return
        retry = Retry("a batch of metrics", OUTAGE)
        computed = datetime.now(UTC)  # before any wait for the database: their age is now's
        while True:
            try:
                queued = self._commit(self._connection(), outputs, self._delivery, computed)
                break
            except psycopg.Error as exc:
                if retry.after(exc) is Failure.LOST and self._conn is not None:
                    self._conn.close()
                    self._conn = None
        OUTAGE.back()
        if queued:
            self._notified()
        self._publish(outputs)

    def close(self) -> None:
        """Flush the producer and close the connection."""
        if self._producer is not None:
            left = self._producer.flush(FLUSH_TIMEOUT_S)
            if left:
                _LOG.warning("%d alert events not delivered to %s", left, ALERT_EVENTS_TOPIC)
        if self._conn is not None:
            self._conn.close()

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = sink_connection(self._url, "rttm-metrics")
        return self._conn

    @staticmethod
    def _commit(
        conn: psycopg.Connection[tuple[Any, ...]],
        outputs: Sequence[MetricsOutput],
        delivery: Delivery | None,
        computed: datetime,
    ) -> bool:
        """One transaction of every row; returns whether it queued notifications."""
        points = [_point_row(p) for out in outputs for p in out.points]
        corrected: dict[datetime, list[Point]] = {}  # the latest of each window's corrections
        for out in outputs:
            for correction in out.corrections:
                corrected[correction.window_start] = correction.points
        cleared = [{"start": start, "metrics": sorted(CORRECTED)} for start in corrected]
        rewritten = [_point_row(p) for found in corrected.values() for p in found]
        uncounted = [
            (u.topic, u.partition, u.offset, _utc(u.time), u.reason)
            for out in outputs
            for u in out.uncounted
        ]
        transitions = [
            (
                t.rule,
                outbox.labels_json(t.labels),
                t.started_at,
                t.state,
                t.at,
                t.value,
                t.severity,
                t.summary,
                t.resolved_at,
            )
            for out in outputs
            for t in out.transitions
        ]
        stuck = [
            (
                s.trade_id,
                _utc(s.last_event_time),
                s.stage,
                s.service,
                s.last_event_type,
                _utc(s.detected_at),
            )
            for out in outputs
            for s in out.stuck
        ]
        recovered = [
            (_utc(r.recovered_at), r.trade_id, _utc(r.last_event_time))
            for out in outputs
            for r in out.recovered
        ]
        notices = []
        if delivery is not None and delivery.receivers:
            notices = outbox.outbox_rows(
                (t for out in outputs for t in out.transitions), delivery, computed
            )
        touched = {
            "starts": sorted(
                {p.window_start for out in outputs for p in out.points} | corrected.keys()
            ),
            "metrics": sorted(COUNTS),
        }
        with conn.transaction(), conn.cursor() as cur:
            batches: list[tuple[str, Sequence[Any]]] = [
                (UPSERT_POINT, points),
                (DELETE_CORRECTED, cleared),
                (UPSERT_POINT, rewritten),
                (INSERT_UNCOUNTED, uncounted),
                (INSERT_TRANSITION, transitions),
                (INSERT_STUCK, stuck),
                (MARK_RECOVERED, recovered),
                (outbox.ENQUEUE, notices),
            ]
            for statement, rows in batches:
                if rows:
                    cur.executemany(statement, rows)
            marks, added = _count(cur, touched)
            if marks:
                cur.executemany(MARK_COUNTED, marks)
            if added:
                cur.executemany(ADD_TO_TOTAL, added)
        return bool(notices)

    def _publish(self, outputs: Sequence[MetricsOutput]) -> None:
        """Hand every transition to the broker and wait until each is acknowledged.

        Returning only then makes publishing at-least-once: a crash before it leaves the
        batch unacknowledged to Bytewax, whose replay publishes it again (same key header).
        """
        producer = self._producer
        pending = [t for out in outputs for t in out.transitions]
        if producer is None or not pending:
            return
        backoff = Backoff()
        while pending:
            failed: list[Transition] = []
            for transition in pending:
                self._produce(producer, transition, failed)
            left = producer.flush(FLUSH_TIMEOUT_S)
            if not failed and not left:
                KAFKA_OUTAGE.back()
                return
            KAFKA_OUTAGE.lost(f"{len(failed) + left} alert events not acknowledged")
            pending = failed if not left else pending  # unknown which: send all again
            stopping.abandon("kafka does not acknowledge alert events")
            backoff.pause()

    @staticmethod
    def _produce(producer: Producer, transition: Transition, failed: list[Transition]) -> None:
        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failed.append(transition)

        while True:
            try:
                producer.produce(
                    ALERT_EVENTS_TOPIC,
                    transition.as_json(),
                    transition.rule.encode(),
                    headers={"rttm-key": transition.key().encode()},
                    on_delivery=delivered,
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)


class _Partition(StatelessSinkPartition[MetricsOutput]):
    def __init__(self, writer: MetricsWriter, release: Callable[[], None]) -> None:
        self._writer, self._release = writer, release

    def write_batch(self, items: list[MetricsOutput]) -> None:
        self._writer.write(items)

    def close(self) -> None:
        self._writer.close()
        self._release()


class MetricsSink(DynamicSink[MetricsOutput]):
    """A writer per worker (only the merge step's worker gets items).

    With receivers in ``delivery``, the process runs one alert :class:`~rttm.alerts.sender.Sender`
    while any of its partitions is open.
    """

    def __init__(
        self,
        database_url: str,
        kafka_config: Mapping[str, Any] | None,
        delivery: Delivery | None = None,
        rules: Sequence[Rule] = (),
    ) -> None:
        self._url, self._kafka_config = database_url, kafka_config
        self._delivery, self._rules = delivery, tuple(rules)
        self._lock = threading.Lock()
        self._sender: Sender | None = None
        self._open = 0

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        """A partition with its own connection and producer."""
        with self._lock:
            if self._sender is None and self._delivery is not None and self._delivery.receivers:
                self._sender = Sender(self._url, self._delivery, self._rules)
                self._sender.start()
            self._open += 1
            notified = self._sender.wake if self._sender is not None else lambda: None
        writer = MetricsWriter(self._url, self._kafka_config, self._delivery, notified)
        return _Partition(writer, self._release)

    def _release(self) -> None:
        with self._lock:
            self._open -= 1
            sender = self._sender if self._open == 0 else None
            if sender is not None:
                self._sender = None
        if sender is not None:
            sender.stop()
