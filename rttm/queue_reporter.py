"""Publish ``rttm.queue.metrics`` snapshots of a consumer group's position on its topics.

Any consumer service can run :class:`QueueMetricsReporter` in a thread; RTTM runs one for
its own consumer groups (``rttm ingest``), so RTTM's lag shows up in RTTM. The produced
offset is the partition's high watermark (ListOffsets, right on Kafka; the local Tansu
broker answers it wrongly for batched writes, docs/design.md §8), the consumed offset is
the group's committed offset, or the low watermark when the group has committed nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition

from rttm.core.config import KafkaSettings
from rttm.core.contracts import QueueMetrics
from rttm_emit import Emitter, uuid7

_LOG = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 10.0
REQUEST_TIMEOUT_S = 5.0


class QueueMetricsReporter:
    """Every ``interval_s``, one snapshot per partition of ``topics`` for ``group``.

    Args:
        group: the consumer group whose committed offsets are reported.
        topics: the topics it consumes.
        service_name: the consuming service, as it appears in the snapshots.
        emitter: where snapshots are published.
        settings: broker address and extra librdkafka settings.
        interval_s: seconds between snapshots.
    """

    def __init__(
        self,
        group: str,
        topics: Sequence[str],
        *,
        service_name: str,
        emitter: Emitter,
        settings: KafkaSettings,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.group, self.topics, self.service_name = group, tuple(topics), service_name
        self.interval_s = interval_s
        self.emitter = emitter
        self._consumer = Consumer(
            settings.client_config(**{"group.id": group, "enable.auto.commit": False})
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def snapshot(self) -> list[QueueMetrics]:
        """Read the group's position on every partition now (no publishing)."""
        metadata = self._consumer.list_topics(timeout=REQUEST_TIMEOUT_S)
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            if topic in metadata.topics
            for p in sorted(metadata.topics[topic].partitions)
        ]
        if not partitions:
            return []
        committed = self._consumer.committed(partitions, timeout=REQUEST_TIMEOUT_S)
        now = datetime.now(UTC)
        snapshots = []
        for tp in committed:
            watermarks = self._consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=REQUEST_TIMEOUT_S
            )
            if watermarks is None:  # the broker did not answer in time
                msg = f"no watermarks for {tp.topic}[{tp.partition}]"
                raise KafkaException(msg)
            low, high = watermarks
            consumed = tp.offset if tp.offset >= 0 else low
            snapshots.append(
                QueueMetrics(
                    service_name=self.service_name,
                    topic_name=tp.topic,
                    partition=tp.partition,
                    produced_offset=max(high, 0),
                    consumed_offset=max(min(consumed, high), 0),
                    snapshot_time=now,
                    event_id=uuid7(),
                )
            )
        return snapshots

    def report_once(self) -> list[QueueMetrics]:
        """Take a snapshot and publish it; a broker problem is logged, never raised."""
        try:
            snapshots = self.snapshot()
        except Exception as exc:
            if not self._warned:
                _LOG.warning("queue metrics of %s not available: %s", self.group, exc)
                self._warned = True
            return []
        self._warned = False
        for snapshot in snapshots:
            self.emitter.emit(snapshot)
        return snapshots

    def start(self) -> QueueMetricsReporter:
        """Report every ``interval_s`` from a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self._run, name=f"rttm-lag-{self.group}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.report_once()

    def stop(self) -> None:
        """Stop reporting and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._consumer.close()
