"""Kafka source of both flows: one partition per (topic, Kafka partition), batches out.

Unlike Bytewax's ``KafkaSource``, a partition emits one item per poll — the raw librdkafka
messages of one Kafka partition that poll brought — instead of one wrapped object per message:
wrapping cost as much as decoding and writing together (BYTEWAX-NOTES, "where the time
goes"). The partitions of a worker read through one consumer (``worker_consumer``) within
a budget per round (``budget``), so catching up a backlog on every partition takes bounded
memory, whatever the partition count. The resume state is the next offset to read; the
ingestion resumes from the database's positions (``resume``), the metrics flow
from Bytewax recovery or the beginning. The consumer groups are never read. A stop asked
for (``rttm.stopping``) ends every partition as a bounded run ends at its last message.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Message

from rttm import stopping
from rttm.ingest import stats
from rttm.ingest.resume import resume_offset
from rttm.ingest.worker_consumer import BROKER, WorkerConsumer
from rttm.kafka_topics import Where
from rttm.registry import TopicSpec

#: How long an idle partition waits before polling again: bounds both the polling cost of
#: many idle partitions and the latency it adds to the first message after a lull.
IDLE_POLL = timedelta(milliseconds=10)
#: How long the broker may hold a fetch for idle partitions (librdkafka: 500 ms). Each
#: bounded run waits about this long at its end for the partitions' EOF; and it bounds the
#: delay of the first message after a lull.
FETCH_WAIT_MS = 100
#: How long librdkafka waits before fetching again once the prefetch queue was full
#: (librdkafka's default: 1 s). The queue is drained within milliseconds here, so the
#: default left the consumer idle most of each second: end-to-end rate went from ~80k to
#: ~100k msg/s with 10 ms (benchmarks/README.md, "where the time goes").
FETCH_QUEUE_BACKOFF_MS = 10
#: How often a caught-up partition says so when asked for heartbeats (metrics flow).
HEARTBEAT_S = 0.5


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Messages of one Kafka partition, in offset order, from one poll."""

    topic: str
    partition: int
    messages: Sequence[Message]
    next_offset: int  # the offset after the last message: where the partition resumes


class _PartitionReader(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self,
        consumer: WorkerConsumer,
        reader: int,
        topic: str,
        partition: int,
        offset: int,
        heartbeat: bool = False,
    ) -> None:
        self._consumer, self._reader = consumer, reader
        self._inbox = consumer.add(topic, partition, offset)
        self._topic, self._partition, self._next = topic, partition, offset
        self._idle_until: datetime | None = None
        self._where = f"{topic}[{partition}]"
        self._heartbeat = heartbeat
        self._beat_at = 0.0

    def _caught_up(self) -> list[RawBatch]:
        """An empty batch (at most every ``HEARTBEAT_S``) once the partition is read to its end.

        "The end" is the high watermark of the last fetch response. The empty batch tells
        event-time consumers that this partition holds nothing older than what they saw.
        """
        now = time.monotonic()
        if not self._heartbeat or now < self._beat_at or BROKER.active:
            return []  # while the broker is away, "read to the end" would be a guess
        if not self._inbox.eof:
            watermarks = self._consumer.watermarks(self._topic, self._partition)
            if not watermarks or watermarks[1] < 0:
                return []  # no fetch response yet
            low, high = watermarks
            position = self._next if self._next >= 0 else low  # nothing read yet: the start
            if position < high:
                return []
        self._beat_at = now + HEARTBEAT_S
        return [RawBatch(self._topic, self._partition, (), self._next)]

    def next_batch(self) -> list[RawBatch]:
        if stopping.requested():
            raise StopIteration  # as at the end of a bounded run: what was read gets written
        inbox = self._inbox
        if not inbox.messages and not inbox.eof:
            # Never block the worker: other partitions (and the sink) share its thread.
            self._consumer.poll(self._reader)
        if inbox.messages:
            self._idle_until = None
            return [self._emit()]
        if inbox.eof:
            self._beat_at = 0.0
            beat = self._caught_up()
            self._heartbeat = False
            if beat:
                return beat
            raise StopIteration
        self._idle_until = datetime.now(UTC) + IDLE_POLL
        return self._caught_up()

    def _emit(self) -> RawBatch:
        """The inbox's messages as one batch, noting how far the partition has been read."""
        messages, self._inbox.messages, self._inbox.nbytes = self._inbox.messages, [], 0
        self._next = (messages[-1].offset() or 0) + 1
        # The watermark cached from fetch responses: right on every broker, unlike a
        # ListOffsets request on the local one (DESIGN §7), and free.
        watermarks = self._consumer.watermarks(self._topic, self._partition)
        high = watermarks[1] if watermarks else self._next
        stats.record_read(self._where, len(messages), max(high - self._next, 0))
        return RawBatch(self._topic, self._partition, messages, self._next)

    def next_awake(self) -> datetime | None:
        return self._idle_until

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._consumer.remove(self._topic, self._partition)


class RttmKafkaSource(FixedPartitionedSource[RawBatch, int]):
    """Every partition of the given topics; see the module docstring.

    Args:
        config: librdkafka settings (bootstrap servers, TLS/SASL extras).
        topics: the registry entries to read.
        partitions: partition count per topic, as found by the preflight check.
        tail: keep following (``True``) or stop at each partition's end.
        heartbeat: emit an empty batch, now and then, for a partition read to its end
            (event-time consumers use it to let their watermark pass an idle partition).
        group_id: the consumer group librdkafka requires (never committed to).
        positions: where each partition resumes, from the database
            (:func:`rttm.ingest.resume.resume_positions`), overriding a recovery
            snapshot's offset; ``None`` resumes from the snapshot or the beginning.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[TopicSpec],
        partitions: Mapping[str, int],
        tail: bool,
        *,
        heartbeat: bool = False,
        group_id: str = "rttm-ingest-reader",
        positions: Mapping[Where, int] | None = None,
    ) -> None:
        self._heartbeat = heartbeat
        self._positions = positions
        self._parts = [
            f"{index}-{spec.name}" for spec in topics for index in range(partitions[spec.name])
        ]
        self._config = {
            **config,
            "group.id": group_id,  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # An offset that is gone (retention deleted it while the flow ran) restarts at
            # the oldest message kept: re-reading is harmless, skipping is not.
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
        self._tail = tail
        self._consumers: dict[int, WorkerConsumer] = {}  # per worker thread
        self._built = itertools.count()
        self._lock = threading.Lock()

    def list_parts(self) -> list[str]:
        """Every ``partition-topic`` (all are reachable from every worker)."""
        return list(self._parts)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        """A reader of ``for_part`` from where it resumes (see the class), else its beginning."""
        index, _, topic = for_part.partition("-")
        offset: int | None = resume_state
        if self._positions is not None:
            where = f"{topic}[{index}]"
            offset = resume_offset(where, self._positions.get((topic, int(index))), resume_state)
        with self._lock:  # a worker builds its partitions in its own thread
            consumer = self._consumers.get(threading.get_ident())
            if consumer is None:
                consumer = WorkerConsumer(self._config, self._tail)
                self._consumers[threading.get_ident()] = consumer
            reader = next(self._built)
        return _PartitionReader(
            consumer, reader, topic, int(index), OFFSET_BEGINNING if offset is None else offset,
            self._heartbeat,
        )  # fmt: skip
