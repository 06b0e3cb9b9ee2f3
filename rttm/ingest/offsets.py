"""Commit durably written offsets to each topic's consumer group (docs/design.md §3.3).

The offset of a Kafka partition is the minimum over shards of ``rttm_ingest_progress``,
read after the database commit, so standard Kafka tooling shows RTTM's real lag. Commits are
asynchronous and at most every ``COMMIT_INTERVAL_S``: they inform, they never gate writing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from rttm.core.db.connect import Conn
from rttm.core.registry import BY_NAME

_LOG = logging.getLogger(__name__)
COMMIT_INTERVAL_S = 0.5

_MIN_OFFSETS = (
    "SELECT topic, kafka_partition, min(next_offset) FROM rttm_ingest_progress"
    " WHERE topic = ANY(%s) AND shard < %s"
    " GROUP BY topic, kafka_partition HAVING count(*) = %s"
)


class OffsetCommitter:
    """Commits the progress of the partitions a shard touched, throttled."""

    def __init__(self, kafka_config: Mapping[str, Any], shards: int) -> None:
        self._admin = AdminClient(dict(kafka_config))
        self._shards = shards
        self._pending: set[str] = set()
        self._touched: set[str] = set()
        self._last = 0.0
        self._futures: list[Future[Any]] = []
        self._warned = False

    def written(self, conn: Conn, topics: Iterable[str], *, force: bool = False) -> None:
        """Note that ``topics`` progressed; commit if the interval passed (or ``force``).

        ``force`` (at close) commits every topic this shard ever wrote, not only those since
        its last commit: the shards commit on their own, so an earlier commit of another
        shard's, made before this one had written its last rows, may have landed last.
        """
        self._touched.update(topics)
        self._pending.update(self._touched if force else topics)
        if not self._pending or (not force and time.monotonic() - self._last < COMMIT_INTERVAL_S):
            return
        self._check_previous()
        rows = conn.execute(_MIN_OFFSETS, (sorted(self._pending), self._shards, self._shards))
        by_group: dict[str, list[TopicPartition]] = {}
        for topic, partition, offset in rows.fetchall():
            group = BY_NAME[topic].consumer_group
            by_group.setdefault(group, []).append(TopicPartition(topic, partition, offset))
        for group, offsets in by_group.items():
            request = [ConsumerGroupTopicPartitions(group, offsets)]
            self._futures.extend(self._admin.alter_consumer_group_offsets(request).values())
        self._pending.clear()
        self._last = time.monotonic()

    def close(self, timeout: float = 5.0) -> None:
        """Wait for outstanding commits (used at the end of a bounded run)."""
        self._check_previous(wait=timeout)

    def _check_previous(self, wait: float = 0.0) -> None:
        """Collect finished commit results; warn once if the broker refuses them."""
        still: list[Future[Any]] = []
        for future in self._futures:
            if not wait and not future.done():
                still.append(future)
                continue
            try:
                future.result(timeout=wait or None)
            except (KafkaException, TimeoutError) as exc:
                if not self._warned:
                    _LOG.warning("committing consumer-group offsets failed: %s", exc)
                    self._warned = True
        self._futures = still
