"""Kafka source of both flows: one partition per (topic, Kafka partition), batches out.

Unlike Bytewax's ``KafkaSource``, a partition emits one item per ``consume()`` call — the
raw librdkafka messages of one Kafka partition — instead of one wrapped object per message:
wrapping cost as much as decoding and writing together (docs/design.md §6.4). The
partitions of a worker share a read budget per round (``budget``), so catching up a backlog
on every partition takes bounded memory. The resume state is the next offset to read; the
ingestion resumes from the database's positions (``resume``), the metrics flow from Bytewax
recovery or the beginning. The consumer groups are never read. A stop asked for
(``rttm.core.stopping``) ends every partition as a bounded run ends at its last message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from rttm.core import stopping
from rttm.core.errors import RttmError
from rttm.core.kafka_topics import Where
from rttm.core.outage import OutageLog
from rttm.core.registry import TopicSpec
from rttm.core.stream import stats
from rttm.core.stream.budget import ROUND_MESSAGES, ReadBudget

_LOG = logging.getLogger(__name__)
#: Most messages a partition's first poll returns: with a backlog on every partition, a first
#: round of 30 x 5,000 messages kept PostgreSQL idle while it was decoded; 500 brings the
#: first write 0.3-0.5 s earlier (measured on the 1M benchmark workload).
FIRST_BATCH = 500
#: How long an idle partition waits before polling again: bounds both the polling cost of
#: many idle partitions and the latency it adds to the first message after a lull.
IDLE_POLL = timedelta(milliseconds=10)
#: How long the broker may hold a fetch for an idle partition (librdkafka: 500 ms). Each
#: bounded run waits about this long at its end for the partitions' EOF; and it bounds the
#: delay of the first message after a lull. 100 ms costs ten small requests a second per
#: idle partition.
FETCH_WAIT_MS = 100
#: librdkafka prefetch, per partition consumer. Each prefetched message costs about a
#: kilobyte of librdkafka memory besides its bytes (60 consumers filled to 1 MiB each held
#: ~270 MB), so all the partitions of a flow share a total, in messages and in bytes: 30
#: partitions get 2,000 messages (or 2 MiB) each, 60 get 1,000 (or 1 MiB). The librdkafka
#: defaults (100,000 messages, 64 MiB per partition) would let prefetching alone take
#: gigabytes.
PREFETCH_MESSAGES = 60_000
PREFETCH_KBYTES = 64 * 1_024
PREFETCH_MIN_MESSAGES = 500
PREFETCH_KBYTES_RANGE = (256, 2_048)
#: Most bytes of one partition in one fetch response (librdkafka: 1 MiB). A response stays
#: in memory until its last message is consumed, so it adds to the prefetch of every
#: partition (benchmarks/README.md, "Catching up").
FETCH_PARTITION_BYTES = 512 * 1_024
#: How long librdkafka waits before fetching again once a partition's prefetch queue was
#: full (librdkafka's default: 1 s). The queue is drained within milliseconds here, so the
#: default left a busy partition idle most of each second: end-to-end rate went from ~80k to
#: ~100k msg/s with 10 ms (benchmarks/README.md, "where the time goes").
FETCH_QUEUE_BACKOFF_MS = 10
#: How often a caught-up partition says so when asked for heartbeats (metrics flow).
HEARTBEAT_S = 0.5
_FATAL = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
}


_BROKER = OutageLog(_LOG, "kafka", "waiting for it")


def resume_offset(where: str, stored: int | None, snapshot: int | None) -> int | None:
    """Where a partition resumes, given the database's position and a recovery snapshot's.

    Both mark an offset below which every message is committed (a snapshot is taken only
    after its batches are committed; a progress row is written with its rows), and the
    database moves on after the snapshot, so the later of the two is the database's. A
    snapshot ahead of the database means the database lost rows (restored from a backup,
    or another database): not safe, so the database's position wins there too, and without
    one (a new database, a recreated topic) the partition is read from its beginning
    (``None``). The snapshot still restores the dedupe memory, which lets re-read rows
    through (``rttm.ingest.dedupe``).
    """
    if stored is not None and snapshot is not None and snapshot > stored:
        _LOG.warning(
            "%s: the database's position %d is behind the recovery snapshot's %d: re-reading"
            " from %d (was the database restored, or replaced?)",
            where,
            stored,
            snapshot,
            stored,
        )
    return stored


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Messages of one Kafka partition, in offset order, from one ``consume()`` call."""

    topic: str
    partition: int
    messages: Sequence[Message]
    next_offset: int  # the offset after the last message: where the partition resumes


class _PartitionReader(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        partition: int,
        offset: int,
        tail: bool,
        budget: ReadBudget,
        heartbeat: bool = False,
    ) -> None:
        self._consumer = Consumer({**config, "enable.partition.eof": not tail})
        self._tp = TopicPartition(topic, partition)
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._topic, self._partition, self._next = topic, partition, offset
        self._eof = False
        self._idle_until: datetime | None = None
        self._where = f"{topic}[{partition}]"
        self._budget, self._reader = budget, budget.join()
        self._first = True
        self._message_bytes = 500.0  # recent average value size, for the byte budget
        self._heartbeat = heartbeat
        self._beat_at = 0.0

    def _caught_up(self) -> list[RawBatch]:
        """An empty batch (at most every ``HEARTBEAT_S``) once the partition is read to its end.

        "The end" is the high watermark of the last fetch response. The empty batch tells
        event-time consumers that this partition holds nothing older than what they saw.
        """
        now = time.monotonic()
        if not self._heartbeat or now < self._beat_at or _BROKER.active:
            return []  # while the broker is away, "read to the end" would be a guess
        if not self._eof:
            watermarks = self._consumer.get_watermark_offsets(self._tp, cached=True)
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
        stats.record_poll()
        if self._eof:
            self._beat_at = 0.0
            beat = self._caught_up()
            self._heartbeat = False
            if beat:
                return beat
            raise StopIteration
        allowed = self._budget.allowance(self._reader, self._message_bytes)
        if self._first:
            allowed = min(allowed, FIRST_BATCH)
        # Never block the worker: other partitions (and the sink) share its thread.
        messages = self._consumer.consume(allowed, 0)
        if not messages:
            self._budget.spent(self._reader, allowed, 0, 0)
            self._idle_until = datetime.now(UTC) + IDLE_POLL
            return self._caught_up()
        self._idle_until = None
        good = []
        size = 0
        for message in messages:
            error = message.error()
            if error is None:
                good.append(message)
                size += len(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                self._eof = True
            else:
                self._on_error(error)
        self._budget.spent(self._reader, allowed, len(messages), size)
        if good or self._eof:  # heard from the broker
            _BROKER.back()
        if not good:
            return []
        self._first = False
        self._message_bytes = (self._message_bytes + size / len(good)) / 2
        self._next = (good[-1].offset() or 0) + 1
        # The watermark cached from fetch responses: right on every broker, unlike a
        # ListOffsets request on the local one (docs/design.md §8), and free.
        watermarks = self._consumer.get_watermark_offsets(self._tp, cached=True)
        high = watermarks[1] if watermarks else self._next
        stats.record_read(self._topic, self._partition, len(good), max(high - self._next, 0))
        return [RawBatch(self._topic, self._partition, good, self._next)]

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in _FATAL or error.fatal():
            msg = f"kafka error on {self._where}: {error.str()}"
            raise RttmError(msg)
        # Transient (broker down, network): librdkafka keeps retrying by itself.
        _BROKER.lost(f"{self._where}: {error.str()}")

    def next_awake(self) -> datetime | None:
        return self._idle_until

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._budget.leave(self._reader)
        self._consumer.close()


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
        round_messages: the read budget of each worker, in messages per round
            (``rttm.core.stream.budget``).
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
        round_messages: int = ROUND_MESSAGES,
    ) -> None:
        self._heartbeat = heartbeat
        self._round_messages = round_messages
        self._positions = positions
        self._parts = [
            f"{index}-{spec.name}" for spec in topics for index in range(partitions[spec.name])
        ]
        count = max(len(self._parts), 1)
        low, high = PREFETCH_KBYTES_RANGE
        self._config = {
            **config,
            "group.id": group_id,  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "queued.min.messages": max(PREFETCH_MIN_MESSAGES, PREFETCH_MESSAGES // count),
            "queued.max.messages.kbytes": max(low, min(high, PREFETCH_KBYTES // count)),
            "fetch.message.max.bytes": FETCH_PARTITION_BYTES,
            # An offset that is gone (retention deleted it while the flow ran) restarts at
            # the oldest message kept: re-reading is harmless, skipping is not.
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
        self._tail = tail
        self._budgets: dict[int, ReadBudget] = {}  # per worker thread
        self._lock = threading.Lock()

    def list_parts(self) -> list[str]:
        """Every ``partition-topic`` (all are reachable from every worker)."""
        stats.record_began()
        return list(self._parts)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        """A reader of ``for_part`` from where it resumes (see the class), else its beginning."""
        index, _, topic = for_part.partition("-")
        offset: int | None = resume_state
        if self._positions is not None:
            where = f"{topic}[{index}]"
            offset = resume_offset(where, self._positions.get((topic, int(index))), resume_state)
        with self._lock:  # a worker builds its partitions in its own thread
            budget = self._budgets.setdefault(
                threading.get_ident(), ReadBudget(self._round_messages)
            )
        return _PartitionReader(
            self._config,
            topic,
            int(index),
            OFFSET_BEGINNING if offset is None else offset,
            self._tail,
            budget,
            self._heartbeat,
        )
