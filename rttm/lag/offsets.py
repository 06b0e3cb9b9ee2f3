"""What a Kafka cluster says about consumer groups and partitions, for the lag exporter.

Committed offsets and the list of groups come from the admin API (OffsetFetch,
ListGroups). A partition's end offset comes from a fetch response's high watermark, not
from ListOffsets: ListOffsets is right on Apache Kafka but low on the local Tansu broker
after batched writes (docs/design.md §8), while every broker puts the true end in fetch
responses. :class:`EndOffsets` therefore reads from each partition's end, which on Kafka
returns nothing at once (end of partition) and on Tansu at most the rest of the last
batch, and keeps the watermarks of those responses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

_LOG = logging.getLogger(__name__)

#: Seconds an admin request may take before the round fails.
REQUEST_TIMEOUT_S = 10.0
#: Seconds :meth:`EndOffsets.read` waits for every partition's first fetch response.
END_TIMEOUT_S = 10.0
#: The consumer group id the end-offset reader is built with: it only assigns partitions,
#: never joins a group or commits, so the cluster holds no such group.
READER_GROUP = "rttm-lag-exporter-reader"

#: A partition: (topic, partition number).
Partition = tuple[str, int]


class SourceError(Exception):
    """The cluster did not answer a request (one line, naming the request)."""


def groups(admin: AdminClient) -> set[str]:
    """Every consumer group the cluster knows."""
    try:
        listed = admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result()
    except KafkaException as exc:
        msg = f"listing consumer groups failed: {exc.args[0]}"
        raise SourceError(msg) from None
    return {listing.group_id for listing in listed.valid}


def committed(admin: AdminClient, group: str) -> dict[Partition, int]:
    """The offsets ``group`` has committed, per partition (empty: none, or no such group)."""
    request = [ConsumerGroupTopicPartitions(group)]
    future = admin.list_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT_S)[group]
    try:
        answer = future.result()
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return {}
        msg = f"reading the committed offsets of group {group!r} failed: {error}"
        raise SourceError(msg) from None
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in answer.topic_partitions or ()
        if tp.error is None and tp.offset >= 0
    }


def partitions(admin: AdminClient, topics: Iterable[str]) -> dict[str, list[int]]:
    """The partitions of each of ``topics`` that exists (a deleted topic is left out)."""
    wanted = set(topics)
    if not wanted:
        return {}
    try:
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    except KafkaException as exc:
        msg = f"reading topic metadata failed: {exc.args[0]}"
        raise SourceError(msg) from None
    return {
        name: sorted(topic.partitions)
        for name, topic in metadata.topics.items()
        if name in wanted and topic.error is None
    }


class EndOffsets:
    """Each partition's start and end offsets, from fetch responses (see the module)."""

    def __init__(self, config: Mapping[str, object]) -> None:
        self._config = {
            **config,
            "group.id": READER_GROUP,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # Only the watermarks matter: fetch little at a time.
            "fetch.max.bytes": 1 << 20,
            "max.partition.fetch.bytes": 1 << 16,
        }

    def read(
        self, wanted: Iterable[Partition], timeout: float = END_TIMEOUT_S
    ) -> dict[Partition, tuple[int, int]]:
        """``(start, end)`` of every partition in ``wanted`` that answered in ``timeout``.

        A partition whose fetch did not answer in time is asked by ListOffsets instead
        (right on Kafka), with a warning.
        """
        todo = sorted(set(wanted))
        if not todo:
            return {}
        consumer = Consumer(self._config)
        try:
            consumer.assign([TopicPartition(topic, p, OFFSET_END) for topic, p in todo])
            answered = self._await_fetches(consumer, set(todo), timeout)
            found = {}
            for topic, p in todo:
                key = (topic, p)
                tp = TopicPartition(topic, p)
                marks = consumer.get_watermark_offsets(tp, cached=True)
                if key not in answered or marks is None or marks[1] < 0:
                    _LOG.warning(
                        "%s[%d]: no fetch answered in %.0f s; its end offset comes from "
                        "ListOffsets, which some brokers answer low",
                        topic,
                        p,
                        timeout,
                    )
                    marks = consumer.get_watermark_offsets(tp, timeout=REQUEST_TIMEOUT_S)
                if marks is not None and marks[1] >= 0:
                    found[key] = (max(marks[0], 0), marks[1])
            return found
        finally:
            consumer.close()

    @staticmethod
    def _await_fetches(consumer: Consumer, todo: set[Partition], timeout: float) -> set[Partition]:
        """Poll until every partition in ``todo`` had a fetch answered (a message or its end)."""
        answered: set[Partition] = set()
        deadline = time.monotonic() + timeout
        while answered != todo and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                continue  # a partition error: it is asked by ListOffsets at the end
            topic, p = message.topic(), message.partition()
            if topic is not None and p is not None:
                answered.add((topic, p))
        return answered
