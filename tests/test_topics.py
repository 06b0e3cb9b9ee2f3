"""``rttm topics create|list`` against a real broker."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from rttm.cli.main import main
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.errors import RttmError
from rttm.core.registry import OUTPUT_TOPICS, TOPICS
from rttm.stack.broker import BrokerProcess
from rttm.stack.processes import free_port

pytestmark = pytest.mark.integration
NAMES = [spec.name for spec in TOPICS]
CREATED = NAMES + list(OUTPUT_TOPICS)  # the alert events topic too


def test_create_makes_the_five_topics_and_the_alert_topic_with_defaults_then_is_idempotent(
    kafka: KafkaSettings,
) -> None:
    assert kafka_topics.create_topics(kafka) == CREATED
    infos = kafka_topics.describe_topics(kafka)
    assert [(i.name, i.partitions) for i in infos] == [(n, 6) for n in NAMES]
    admin = AdminClient({"bootstrap.servers": kafka.brokers})
    resources = [ConfigResource("topic", name) for name in CREATED]
    for future in admin.describe_configs(resources).values():
        config = future.result()
        assert config["retention.ms"].value == str(3 * 86_400_000)
        assert config["cleanup.policy"].value == "delete"
    assert kafka_topics.create_topics(kafka, partitions=2) == []
    assert [i.partitions for i in kafka_topics.describe_topics(kafka)] == [6] * 5


def test_create_takes_partitions_and_retention(kafka: KafkaSettings) -> None:
    kafka_topics.create_topics(kafka, partitions=2, retention_days=1)
    assert {i.partitions for i in kafka_topics.describe_topics(kafka)} == {2}
    admin = AdminClient({"bootstrap.servers": kafka.brokers})
    config = admin.describe_configs([ConfigResource("topic", NAMES[0])])
    assert next(iter(config.values())).result()["retention.ms"].value == "86400000"


def test_list_shows_end_offsets(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka_topics.create_topics(kafka, partitions=2)
    # One record per batch: the local broker reports end offsets right only then
    # (docs/design.md §8).
    producer = Producer(
        {"bootstrap.servers": kafka.brokers, "linger.ms": 0, "batch.num.messages": 1}
    )
    for n in range(7):
        producer.produce("rttm.dlq.events", b"{}", partition=n % 2)
    assert producer.flush(10) == 0
    infos = {i.name: i for i in kafka_topics.describe_topics(kafka)}
    assert infos["rttm.dlq.events"].end_offsets == (4, 3)
    assert infos["rttm.dlq.events"].messages == 7
    monkeypatch.setenv("RTTM_KAFKA_BROKERS", kafka.brokers)
    assert main(["topics", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITIONS", "MESSAGES", "END", "OFFSETS"]
    assert "rttm.dlq.events 2 7 4,3" in [" ".join(line.split()) for line in lines]


def test_list_names_missing_topics(
    broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTTM_KAFKA_BROKERS", broker.bootstrap)
    assert main(["topics", "list"]) == 0
    assert "missing topics: rttm.trade.events, rttm.queue.metrics" in capsys.readouterr().err


def test_create_command_prints_what_exists(
    broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTTM_KAFKA_BROKERS", broker.bootstrap)
    assert main(["topics", "create", "--partitions", "3"]) == 0
    out, err = capsys.readouterr()
    assert f"topics created: {', '.join(CREATED)}" in err
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [[n, "3"] for n in NAMES]
    assert main(["topics", "create"]) == 0
    assert "topics created: none (all exist)" in capsys.readouterr().err


def test_unreachable_broker_fails_fast_with_where(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_topics, "ADMIN_TIMEOUT_S", 2.0)
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RttmError, match=f"cannot reach kafka at {dead} within 2 s"):
        kafka_topics.create_topics(KafkaSettings(brokers=dead, extra={}))
    assert time.monotonic() - started < 10
