"""One lag-exporter round over many groups: ``python -m benchmarks.lag_exporter [--groups N]``.

Starts a private broker with three business topics of ``--partitions`` partitions, written
in batches, and ``--groups`` consumer groups each committed on one of them; then times
``--rounds`` rounds of a pattern-watching exporter (list groups, committed offsets, end
offsets from fetches, publish and flush). Prints each round's time and its snapshots.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.lag.exporter import LagExporter, Watch
from rttm_emit import Emitter

TOPICS = ("orders", "payments", "positions")
MESSAGES_PER_TOPIC = 3_000


def _platform(brokers: str, groups: int, partitions: int) -> None:
    """The business topics, written in batches, and ``groups`` groups' commits on them."""
    settings = KafkaSettings(brokers=brokers, extra={})
    kafka_topics.create_topics(settings, partitions=partitions, names=TOPICS)
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20})
    for topic in TOPICS:
        for n in range(MESSAGES_PER_TOPIC):
            producer.produce(topic, b"order", partition=n % partitions)
    producer.flush(30)
    for n in range(groups):
        consumer = Consumer(
            {"bootstrap.servers": brokers, "group.id": f"svc-{n}", "enable.auto.commit": False}
        )
        topic = TOPICS[n % len(TOPICS)]
        offsets = [TopicPartition(topic, p, 100 + n) for p in range(partitions)]
        consumer.commit(offsets=offsets, asynchronous=False)
        consumer.close()


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lag_exporter")
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rttm-lag-bench-") as tmp:
        local = stack.up(Path(tmp), with_postgres=False, kafka_port=0)
        try:
            settings = KafkaSettings(brokers=local.kafka_brokers, extra={})
            kafka_topics.create_topics(settings, partitions=1)
            _platform(local.kafka_brokers, args.groups, args.partitions)
            emitter = Emitter(settings)
            exporter = LagExporter(settings, emitter, Watch.parse([], "svc-.*"))
            for n in range(args.rounds):
                started = time.perf_counter()
                taken = len(exporter.round())
                seconds = time.perf_counter() - started
                print(
                    f"round {n + 1}: {args.groups} groups, {taken:,} snapshots in {seconds:.2f} s"
                )
            exporter.close()
            emitter.close(10)
        finally:
            stack.down(Path(tmp), purge=True)


if __name__ == "__main__":
    main()
