"""A realistic, seeded mix of the five topics, with duplicates and malformed messages.

Shares one generator with the micro benchmarks (``benchmarks.data.payload``). Every event
carries an ``event_id``, as producers using ``rttm.emit`` do; a duplicate is the same
message sent again a little later (a producer retry), a malformed message breaks one rule.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from benchmarks.data import payload
from rttm.registry import BY_NAME

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


@dataclass
class Workload:
    """What was produced: the ground truth the database is compared with."""

    messages: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    distinct: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    duplicates: int = 0  # resent messages, malformed ones included

    @property
    def total(self) -> int:
        """Messages produced, duplicates and malformed included."""
        return len(self.messages)


def build(count: int, seed: int = 11) -> Workload:
    """``count`` messages (topic, key, value) with the shares above."""
    rng = random.Random(seed)
    topics, weights = list(MIX), list(MIX.values())
    work = Workload()
    recent: list[tuple[str, bytes, bytes]] = []
    malformed: set[bytes] = set()
    n = 0
    while work.total < count:
        draw = rng.random()
        if draw < DUPLICATE_SHARE and recent:
            again = rng.choice(recent[-RETRY_DISTANCE:])
            work.messages.append(again)
            work.duplicates += 1
            # A malformed message sent twice is two rejects: rejects are keyed by offset.
            work.malformed += again[2] in malformed
            continue
        topic = rng.choices(topics, weights)[0]
        body = payload(topic, rng, n)
        body["event_id"] = f"ev-{seed}-{n}"
        n += 1
        spec = BY_NAME[topic]
        key = "-".join(str(body[f]) for f in spec.key_fields).encode()
        if draw < DUPLICATE_SHARE + MALFORMED_SHARE:
            body[spec.time_field] = body[spec.time_field].removesuffix("Z")  # naive
            work.malformed += 1
        else:
            work.distinct[spec.table] += 1
        message = (topic, key, json.dumps(body).encode())
        if draw >= DUPLICATE_SHARE and draw < DUPLICATE_SHARE + MALFORMED_SHARE:
            malformed.add(message[2])
        work.messages.append(message)
        if len(recent) > 4 * RETRY_DISTANCE:
            del recent[: 2 * RETRY_DISTANCE]
        recent.append(message)
    return work


def produce(brokers: str, work: Workload, **config: Any) -> None:
    """Send every message of ``work`` in order (retries keep their relative order).

    ``config`` adds librdkafka settings (TLS, say).
    """
    producer = Producer(
        {"bootstrap.servers": brokers, "linger.ms": 20, "batch.num.messages": 10_000,
         "queue.buffering.max.messages": 500_000, "enable.idempotence": False, **config}
    )  # fmt: skip
    for topic, key, value in work.messages:
        send(producer, topic, key, value)
    remaining = producer.flush(60)
    if remaining:
        msg = f"{remaining} messages not delivered"
        raise RuntimeError(msg)


def send(producer: Producer, topic: str, key: bytes, value: bytes, wait: float = 0.05) -> None:
    """Produce one message, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(wait)
