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
from collections.abc import Iterable

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from rttm.core import stopping
from rttm.core.config import KafkaSettings

_LOG = logging.getLogger(__name__)

#: Seconds an admin request may take before the round fails.
REQUEST_TIMEOUT_S = 10.0
#: Seconds :meth:`EndOffsets.read` waits for every partition's first fetch response.
END_TIMEOUT_S = 10.0
#: The group id the end-offset reader is built with (librdkafka wants one): it only assigns
#: partitions, never joins the group or commits, so the cluster lists no such group.
READER_GROUP = "rttm-lag-exporter-reader"

#: A partition: (topic, partition number).
Partition = tuple[str, int]


class SourceError(Exception):
    """The cluster did not answer a request (one line, naming the request)."""


def _said(error: object) -> str:
    """A Kafka error as its text (``KafkaError`` prints as a struct)."""
    return error.str() if isinstance(error, KafkaError) else str(error)


def groups(admin: AdminClient) -> set[str]:
    """Every consumer group the cluster knows.

    Raises:
        SourceError: the cluster, or one of its brokers, did not answer: a partial list
            would look as if the missing groups were gone.
    """
    try:
        listed = admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result()
    except KafkaException as exc:
        msg = f"listing consumer groups failed: {_said(exc.args[0])}"
        raise SourceError(msg) from None
    if listed.errors:
        msg = f"listing consumer groups failed: {_said(listed.errors[0])}"
        raise SourceError(msg)
    return {listing.group_id for listing in listed.valid}


def committed(admin: AdminClient, names: Iterable[str]) -> dict[str, dict[Partition, int]]:
    """The offsets each group has committed, per partition (empty: none, or no such group).

    The requests go out together (one group each, as the API allows) and are awaited after.
    """
    futures = {
        group: admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=REQUEST_TIMEOUT_S
        )[group]
        for group in names
    }
    found: dict[str, dict[Partition, int]] = {}
    for group, future in futures.items():
        try:
            answer = future.result()
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                found[group] = {}
                continue
            msg = f"reading the committed offsets of group {group!r} failed: {_said(error)}"
            raise SourceError(msg) from None
        found[group] = {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions or ()
            if tp.error is None and tp.offset >= 0
        }
    return found


def partitions(admin: AdminClient, topics: Iterable[str]) -> dict[str, list[int]]:
    """The partitions of each of ``topics`` that exists (a deleted topic is left out)."""
    wanted = set(topics)
    if not wanted:
        return {}
    try:
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    except KafkaException as exc:
        msg = f"reading topic metadata failed: {_said(exc.args[0])}"
        raise SourceError(msg) from None
    return {
        name: sorted(topic.partitions)
        for name, topic in metadata.topics.items()
        if name in wanted and topic.error is None
    }


class EndOffsets:
    """Each partition's start and end offsets, from fetch responses (see the module).

    One consumer for the exporter's life: each read assigns the partitions anew at their
    end, which drops whatever an earlier read had fetched.

    Raises:
        rttm.core.config.ConfigError: librdkafka refuses the settings (naming the key).
    """

    def __init__(self, settings: KafkaSettings) -> None:
        config = settings.client_config(
            **{
                "group.id": READER_GROUP,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                # Only the watermarks matter: little of each partition at a time.
                "max.partition.fetch.bytes": 1 << 16,
            }
        )
        try:
            self._consumer = Consumer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise settings.rejected(exc) from None
        self._silent: set[Partition] = set()  # partitions said not to answer

    def read(
        self, wanted: Iterable[Partition], timeout: float = END_TIMEOUT_S
    ) -> dict[Partition, tuple[int, int]]:
        """``(start, end)`` of every partition in ``wanted`` whose fetch answered in time.

        A partition that did not answer (no leader, say) is left out of this read, and said
        once until it answers again; the caller reports the others.
        """
        todo = set(wanted)
        if not todo:
            self._consumer.unassign()
            return {}
        self._consumer.assign([TopicPartition(topic, p, OFFSET_END) for topic, p in sorted(todo)])
        answered = self._await_fetches(todo, timeout)
        found = {}
        for key in sorted(answered):
            low, high = self._consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
            if high >= 0:
                found[key] = (max(low, 0), high)
        silent = todo - found.keys()
        for topic, p in sorted(silent - self._silent):
            _LOG.warning("%s[%d]: no fetch answered in %.0f s: not reported", topic, p, timeout)
        for topic, p in sorted((self._silent & todo) - silent):
            _LOG.info("%s[%d]: answers again", topic, p)
        self._silent = silent | (self._silent - todo)
        return found

    def _await_fetches(self, todo: set[Partition], timeout: float) -> set[Partition]:
        """Poll until each of ``todo`` had a fetch answered (a message or its end).

        Or until ``timeout``, or a stop asked for: a round must not hold up a clean stop.
        """
        answered: set[Partition] = set()
        deadline = time.monotonic() + timeout
        while answered != todo and time.monotonic() < deadline and not stopping.requested():
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                continue  # a partition error: it stays unanswered
            topic, p = message.topic(), message.partition()
            if topic is not None and p is not None:
                answered.add((topic, p))
        return answered

    def close(self) -> None:
        """Leave the cluster."""
        self._consumer.close()
