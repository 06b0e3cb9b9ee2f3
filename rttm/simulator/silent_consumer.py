"""A business queue whose consumer never reports its lag, for ``rttm demo``'s lag exporter.

Run as ``python -m rttm.simulator.silent_consumer TOPIC GROUP``: it creates ``TOPIC`` if
needed, produces ``--rate`` orders a second to it, and consumes them in the consumer group
``GROUP`` at ``--keep-up`` of that pace, committing as any service does, and publishing
nothing to RTTM. Its lag grows, and only ``rttm lag-exporter`` can see it.
"""

from __future__ import annotations

import argparse
import time

from confluent_kafka import Consumer, Producer

from rttm.core import kafka_topics, logs, stopping
from rttm.core.config import KafkaSettings

PARTITIONS = 3


def main() -> int:
    """Produce and consume until stopped; exit 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("--rate", type=float, default=30.0, help="orders produced a second")
    parser.add_argument(
        "--keep-up", type=float, default=0.8, help="share of the rate consumed (default 0.8)"
    )
    args = parser.parse_args()
    logs.setup()
    settings = KafkaSettings.from_env()
    kafka_topics.create_topics(settings, partitions=PARTITIONS, names=[args.topic])
    producer = Producer(settings.client_config(**{"linger.ms": 20}))
    consumer = Consumer(
        settings.client_config(
            **{
                "group.id": args.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
    )
    consumer.subscribe([args.topic])
    stopping.install()
    produced = consumed = 0
    began = time.monotonic()
    try:
        while not stopping.wait(0.1):
            due = int((time.monotonic() - began) * args.rate)
            for n in range(produced, due):
                producer.produce(args.topic, f"order {n}".encode(), key=str(n % 97).encode())
            produced = max(produced, due)
            producer.poll(0)
            allowed = int(produced * args.keep_up) - consumed
            if allowed > 0:
                read = sum(1 for m in consumer.consume(allowed, timeout=0.05) if not m.error())
                if read:  # commit() of nothing is an error (no offset)
                    consumed += read
                    consumer.commit(asynchronous=False)
    finally:
        producer.flush(5)
        consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
