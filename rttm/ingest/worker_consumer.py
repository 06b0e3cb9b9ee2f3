"""One librdkafka consumer per Bytewax worker, shared by every partition the worker reads.

A consumer per partition cost about a kilobyte of librdkafka memory per message it had
prefetched, per partition: 60 partitions catching up held ~270 MB in librdkafka alone.
One consumer keeps one queue for all of them, bounded by ``QUEUED_MESSAGES`` and
``QUEUED_KBYTES`` whatever the partition count, and the broker answers one fetch request
for all the worker's partitions instead of one each. Each partition reader polls through
it: a poll reads what the round's budget allows (``budget``) and hands every message to the
inbox of its partition, in offset order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from rttm import stopping
from rttm.ingest.budget import RoundBudget
from rttm.outage import OutageLog

_LOG = logging.getLogger("rttm.ingest.source")
#: Messages librdkafka keeps prefetched for the worker (its ``queued.min.messages``): it
#: fetches while fewer are queued. Each costs about 1 kB besides its bytes; enough to keep
#: a catch-up busy (measured in benchmarks/README.md, "Catching up").
QUEUED_MESSAGES = 20_000
#: ... and at most this many kilobytes of them (``queued.max.messages.kbytes``).
QUEUED_KBYTES = 16 * 1024
#: Largest fetch response (``fetch.max.bytes``; librdkafka's 50 MB would be one buffer of
#: up to 50 MB per request with many partitions behind).
FETCH_MAX_BYTES = 8 * 1024 * 1024
_FATAL = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED,
          KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}  # fmt: skip

BROKER = OutageLog(_LOG, "kafka", "waiting for it")


@dataclass(slots=True)
class Inbox:
    """What a poll of the worker's consumer brought for one partition, not yet emitted."""

    messages: list[Message] = field(default_factory=list)
    nbytes: int = 0
    eof: bool = False  # the partition was read to its end (bounded runs only)


class WorkerConsumer:
    """The consumer of one worker: assign partitions, poll within the budget, route.

    Args:
        config: librdkafka settings (servers, TLS/SASL, the source's tuning).
        tail: keep following (``True``) or report each partition's end.
    """

    def __init__(self, config: Mapping[str, Any], tail: bool) -> None:
        self._consumer = Consumer({
            **config, "enable.partition.eof": not tail, "queued.min.messages": QUEUED_MESSAGES,
            "queued.max.messages.kbytes": QUEUED_KBYTES, "fetch.max.bytes": FETCH_MAX_BYTES,
        })  # fmt: skip
        self._inboxes: dict[tuple[str, int], Inbox] = {}
        self._budget = RoundBudget()
        self._message_bytes = 500.0  # recent average value size, for the byte budget

    def add(self, topic: str, partition: int, offset: int) -> Inbox:
        """Start reading ``topic[partition]`` at ``offset``; returns its inbox."""
        inbox = self._inboxes[(topic, partition)] = Inbox()
        self._consumer.incremental_assign([TopicPartition(topic, partition, offset)])
        return inbox

    def remove(self, topic: str, partition: int) -> None:
        """Stop reading ``topic[partition]``; the consumer closes with its last partition."""
        if self._inboxes.pop((topic, partition), None) is None:
            return
        if self._inboxes:
            self._consumer.incremental_unassign([TopicPartition(topic, partition)])
        else:
            self._consumer.close()

    def watermarks(self, topic: str, partition: int) -> tuple[int, int] | None:
        """(low, high) of the partition as of the last fetch response (no request)."""
        found = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        return (int(found[0]), int(found[1])) if found else None

    def poll(self, reader: int) -> None:
        """Read what the round allows, without waiting, into the partitions' inboxes."""
        allowed = self._budget.allowance(reader, self._message_bytes)
        if allowed == 0:
            return  # the round's budget is spent: the next round reads on
        messages = self._consumer.consume(allowed, 0)
        nbytes = 0
        heard = False
        for message in messages:
            error = message.error()
            inbox = self._inboxes.get((message.topic() or "", message.partition() or 0))
            if error is None:
                heard = True
                if inbox is not None:  # else unassigned meanwhile: it is read again later
                    size = len(message)
                    inbox.messages.append(message)
                    inbox.nbytes += size
                    nbytes += size
            elif error.code() == KafkaError._PARTITION_EOF:
                heard = True
                if inbox is not None:
                    inbox.eof = True
            else:
                _on_error(message, error)
        if heard:
            BROKER.back()
        self._budget.spent(len(messages), nbytes)
        if nbytes:
            self._message_bytes = (self._message_bytes + nbytes / len(messages)) / 2


def _on_error(message: Message, error: KafkaError) -> None:
    where = f"{message.topic()}[{message.partition()}]" if message.topic() else "kafka"
    if error.code() in _FATAL or error.fatal():
        stopping.fail(f"kafka error on {where}: {error.str()}")
    # Transient (broker down, network): librdkafka keeps retrying by itself.
    BROKER.lost(f"{where}: {error.str()}")
