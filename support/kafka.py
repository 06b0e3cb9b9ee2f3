"""Messages to the real broker, in order: what the tests and the metrics benchmarks produce."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import Producer

#: One Kafka message: (topic, key, value); a tombstone or a keyless message holds None.
Message = tuple[str, bytes | None, bytes | None]


def produce(brokers: str, messages: Iterable[Message], **config: Any) -> int:
    """Send ``(topic, key, value)`` messages in order; returns how many."""
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, **config})
    count = 0
    for topic, key, value in messages:
        producer.produce(topic, value, key)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return count
