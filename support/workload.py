"""A realistic, seeded mix of the five topics, with duplicates and malformed messages.

Shares one generator with the micro benchmarks (``support.data.payload``). Every event
carries an ``event_id``, as producers using ``rttm.emit`` do; a duplicate is the same
message sent again a little later (a producer retry), a malformed message breaks one rule.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from rttm.core.registry import BY_NAME
from support.data import payload

#: Share of each topic in the stream: trade events dominate, as in the platform.
MIX = {
    "rttm.trade.events": 0.80,
    "rttm.queue.metrics": 0.08,
    "rttm.log.events": 0.05,
    "rttm.error.events": 0.04,
    "rttm.dlq.events": 0.03,
}
DUPLICATE_SHARE = 0.10
MALFORMED_SHARE = 0.01
#: A retry re-sends a message at most this many messages later.
RETRY_DISTANCE = 200


#: One Kafka message: (topic, key, value).
Msg = tuple[str, bytes, bytes]


@dataclass
class Workload:
    """What was produced: the ground truth the database is compared with.

    ``build`` keeps the messages; a workload filled by ``stream`` keeps only the counts
    (``messages`` stays empty), which are complete once the stream is exhausted.
    """

    messages: list[Msg] = field(default_factory=list)
    distinct: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    duplicates: int = 0  # resent messages, malformed ones included
    generated: int = 0  # messages yielded so far, duplicates and malformed included

    @property
    def total(self) -> int:
        """Messages produced, duplicates and malformed included."""
        return self.generated


def build(count: int, seed: int = 11) -> Workload:
    """``count`` messages (topic, key, value) with the shares above."""
    work = Workload()
    work.messages.extend(stream(count, seed, work))
    return work


def stream(count: int, seed: int = 11, work: Workload | None = None) -> Iterator[Msg]:
    """The messages ``build(count, seed)`` holds, one at a time, in the same order.

    ``work`` (if given) is kept up to date with the running totals as messages are yielded;
    only the last ``4 * RETRY_DISTANCE`` originals are held, to be sent again.
    """
    work = Workload() if work is None else work
    rng = random.Random(seed)
    topics, weights = list(MIX), list(MIX.values())
    recent: list[tuple[Msg, bool]] = []  # originals that may be retried, and if malformed
    n = 0
    while work.generated < count:
        draw = rng.random()
        if draw < DUPLICATE_SHARE and recent:
            again, was_malformed = rng.choice(recent[-RETRY_DISTANCE:])
            work.duplicates += 1
            # A malformed message sent twice is two rejects: rejects are keyed by offset.
            work.malformed += was_malformed
            work.generated += 1
            yield again
            continue
        topic = rng.choices(topics, weights)[0]
        body = payload(topic, rng, n)
        body["event_id"] = f"ev-{seed}-{n}"
        n += 1
        spec = BY_NAME[topic]
        key = "-".join(str(body[f]) for f in spec.key_fields).encode()
        malformed = draw < DUPLICATE_SHARE + MALFORMED_SHARE
        if malformed:
            body[spec.time_field] = body[spec.time_field].removesuffix("Z")  # naive
            work.malformed += 1
        else:
            work.distinct[spec.table] += 1
        message = (topic, key, json.dumps(body).encode())
        if len(recent) > 4 * RETRY_DISTANCE:
            del recent[: 2 * RETRY_DISTANCE]
        recent.append((message, malformed))
        work.generated += 1
        yield message


def produce(brokers: str, work: Workload, **config: Any) -> None:
    """Send every message of ``work`` in order (retries keep their relative order).

    ``config`` adds librdkafka settings (TLS, say).
    """
    produce_stream(brokers, work.messages, **config)


def produce_stream(brokers: str, messages: Iterable[Msg], **config: Any) -> int:
    """Send ``messages`` in order as they come (none is held); returns how many were sent.

    ``config`` adds librdkafka settings (TLS, say).
    """
    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "enable.idempotence": False,
            **config,
        }
    )
    sent = 0
    for topic, key, value in messages:
        send(producer, topic, key, value)
        sent += 1
    remaining = producer.flush(60)
    if remaining:
        msg = f"{remaining} of {sent} messages not delivered"
        raise RuntimeError(msg)
    return sent


def send(producer: Producer, topic: str, key: bytes, value: bytes, wait: float = 0.05) -> None:
    """Produce one message, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(wait)
