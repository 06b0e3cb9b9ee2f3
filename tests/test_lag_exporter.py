"""``rttm lag-exporter``: lag of consumer groups that never heard of RTTM, on a real broker.

The business consumers here are kafka-python's, a client RTTM does not use, committing
offsets as any service would. The truth of each partition's lag is what the test produced
and committed; the broker is the local Tansu, whose ListOffsets answers low after batched
writes (docs/design.md §8), so every topic here is written in batches.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaPythonPartition
from kafka.structs import OffsetAndMetadata

from rttm.cli import lag_commands
from rttm.core.config import ConfigError, KafkaSettings
from rttm.core.errors import RttmError
from rttm.core.kafka_topics import create_topics
from rttm.lag import offsets
from rttm.lag.exporter import LagExporter, Watch
from rttm.lag.offsets import SourceError
from rttm.stack.broker import BrokerProcess, start_broker
from rttm.stack.processes import free_port
from rttm_emit import Emitter
from rttm_emit.topics import QUEUE_METRICS
from tests.ingest_helpers import REPO, flow_env
from tests.metrics_helpers import run_metrics
from tests.processes import RTTM, probe, start, stop, wait_for

#: Messages produced to each of the business topic's three partitions.
PRODUCED = (1_200, 900, 600)
#: What the business group commits on each (None: nothing, so it counts from the start).
COMMITTED = (1_000, 150, None)


def business_topic(brokers: str, partitions: int = 3) -> str:
    """A new topic with ``PRODUCED`` messages per partition, written in batches."""
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=10)
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 50})
    for partition, count in enumerate(PRODUCED[:partitions]):
        for n in range(count):
            producer.produce(topic, f"order {n}".encode(), partition=partition)
    assert producer.flush(30) == 0
    return topic


def commit(brokers: str, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Commit ``offsets`` for ``group`` as a kafka-python consumer service does."""
    consumer = KafkaConsumer(bootstrap_servers=brokers, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign([KafkaPythonPartition(topic, p) for p in offsets])
        consumer.commit(
            {
                KafkaPythonPartition(topic, p): OffsetAndMetadata(offset, "", -1)
                for p, offset in offsets.items()
            }
        )
    finally:
        consumer.close()


def committed_truth() -> dict[int, int]:
    return {p: offset for p, offset in enumerate(COMMITTED) if offset is not None}


def snapshots(brokers: str, service: str) -> list[dict[str, Any]]:
    """Every ``rttm.queue.metrics`` snapshot of ``service`` on the cluster, oldest first."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    found = []
    try:
        metadata = consumer.list_topics(QUEUE_METRICS.name, timeout=10).topics[QUEUE_METRICS.name]
        consumer.assign([TopicPartition(QUEUE_METRICS.name, p, 0) for p in metadata.partitions])
        ended: set[int | None] = set()
        while len(ended) < len(metadata.partitions):
            message = consumer.poll(10)
            assert message is not None, "rttm.queue.metrics did not answer"
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                ended.add(message.partition())
                continue
            snapshot = json.loads(message.value() or b"{}")
            if snapshot["service_name"] == service:
                found.append(snapshot)
    finally:
        consumer.close()
    return sorted(found, key=lambda s: (s["snapshot_time"], s["topic_name"], s["partition"]))


def exporter_env(rttm: str) -> dict[str, str]:
    env = flow_env(KafkaSettings(brokers=rttm, extra={}), "postgresql://unused")
    del env["RTTM_DATABASE_URL"], env["RTTM_TAIL"]
    return env


def lag_exporter(rttm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RTTM, "lag-exporter", *args],
        env=exporter_env(rttm),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def rttm_cluster(broker: BrokerProcess) -> str:
    """RTTM's own cluster, fresh, with its topics."""
    create_topics(KafkaSettings(brokers=broker.bootstrap, extra={}), partitions=1)
    return broker.bootstrap


def test_one_round_reports_each_partitions_lag_as_the_truth(rttm_cluster: str) -> None:
    topic = business_topic(rttm_cluster)
    commit(rttm_cluster, "settlement", topic, committed_truth())
    listed = Consumer({"bootstrap.servers": rttm_cluster, "group.id": "probe"})
    low_ends = [
        listed.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1, 2)
    ]
    listed.close()
    assert any(end < count for end, count in zip(low_ends, PRODUCED, strict=True)), (
        "the batches did not reach ListOffsets' quirk: this test would not show the end is right"
    )

    result = lag_exporter(rttm_cluster, "--group", "settlement=settlement-engine", "--once")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 snapshots in 1 rounds" in result.stderr

    sent = snapshots(rttm_cluster, "settlement-engine")
    assert {s["topic_name"] for s in sent} == {topic}
    by_partition = {s["partition"]: s for s in sent}
    assert sorted(by_partition) == [0, 1, 2]
    for partition, snapshot in by_partition.items():
        consumed = COMMITTED[partition] or 0  # nothing committed: from the partition's start
        assert snapshot["produced_offset"] == PRODUCED[partition]
        assert snapshot["consumed_offset"] == consumed
        assert snapshot["event_id"]
        assert datetime.fromisoformat(snapshot["snapshot_time"]) <= datetime.now(UTC)


def test_a_business_cluster_apart_from_rttms(rttm_cluster: str, tmp_path: Path) -> None:
    other = start_broker(tmp_path / "business", free_port())
    try:
        business = other.bootstrap
        topic = business_topic(business, partitions=2)
        commit(business, "risk", topic, {0: 1_000, 1: 900})
        result = lag_exporter(
            rttm_cluster, "--group", "risk=risk-engine", "--once", "--source-brokers", business
        )
        assert result.returncode == 0, result.stderr[-2000:]
        on_business = AdminClient({"bootstrap.servers": business}).list_topics(timeout=10)
    finally:
        other.stop()
    sent = snapshots(rttm_cluster, "risk-engine")  # published to RTTM's cluster only
    lags = {s["partition"]: s["produced_offset"] - s["consumed_offset"] for s in sent}
    assert lags == {0: 200, 1: 0}
    assert set(on_business.topics) == {topic}


def test_a_pattern_finds_a_group_created_later_and_drops_a_deleted_one(rttm_cluster: str) -> None:
    topic = business_topic(rttm_cluster, partitions=1)
    prefix = f"pricing-{uuid.uuid4().hex[:6]}"
    port = free_port()
    process = start(
        [
            *RTTM,
            "lag-exporter",
            "--group-regex",
            f"{prefix}-.*",
            "--interval",
            "0.5",
            "--metrics-port",
            str(port),
        ],
        exporter_env(rttm_cluster),
    )
    try:
        wait_for(lambda: probe(port, "/readyz")[0] == 200, timeout=30)
        group = f"{prefix}-quotes"
        commit(rttm_cluster, group, topic, {0: 1_100})
        wait_for(lambda: len(snapshots(rttm_cluster, group)) >= 2, timeout=30)
        assert {
            s["produced_offset"] - s["consumed_offset"] for s in snapshots(rttm_cluster, group)
        } == {100}
        _, scraped = probe(port, "/metrics")
        assert "rttm_lag_exporter_groups 1.0" in scraped
        assert 'rttm_lag_exporter_failures_total{stage="source"} 0.0' in scraped
        acknowledged = [
            float(line.split()[1])
            for line in scraped.splitlines()
            if line.startswith("rttm_lag_exporter_snapshots_total ")
        ]
        assert acknowledged[0] >= 2  # each round's snapshots, acknowledged by the round's end

        admin = AdminClient({"bootstrap.servers": rttm_cluster})  # kept: it answers the future
        admin.delete_consumer_groups([group])[group].result(timeout=10)
        wait_for(lambda: "rttm_lag_exporter_groups 0.0" in probe(port, "/metrics")[1], timeout=30)
        rounds = _rounds(port)
        wait_for(lambda: _rounds(port) >= rounds + 2, timeout=30)  # the last sends landed
        before = len(snapshots(rttm_cluster, group))
        rounds = _rounds(port)
        wait_for(lambda: _rounds(port) >= rounds + 3, timeout=30)
        assert len(snapshots(rttm_cluster, group)) == before  # dropped: nothing more
    finally:
        status, lines = stop(process, signal.SIGTERM)
    assert status == 0, lines
    said = [line for line in lines if group in line]
    assert sum("reporting consumer group" in line for line in said) == 1, said
    assert sum("no longer reported" in line for line in said) == 1, said


def _rounds(port: int) -> float:
    for line in probe(port, "/metrics")[1].splitlines():
        if line.startswith("rttm_lag_exporter_rounds_total "):
            return float(line.split()[1])
    return 0.0


def test_a_group_that_stops_committing_becomes_stall(rttm_cluster: str, migrated_db: str) -> None:
    topic = business_topic(rttm_cluster, partitions=1)
    commit(rttm_cluster, "reconciler", topic, {0: 700})  # 500 behind, and it never moves
    start_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    times = iter(start_at + timedelta(seconds=5 * n) for n in range(40))
    settings = KafkaSettings(brokers=rttm_cluster, extra={})
    emitter = Emitter(settings)
    exporter = LagExporter(
        settings, emitter, Watch.parse(["reconciler=recon"], None), times.__next__
    )
    for _ in range(40):  # 200 s of snapshots, 5 s apart, as the exporter takes them
        assert len(exporter.round()) == 1
    assert emitter.close(10) == 0

    result = run_metrics(flow_env(settings, migrated_db))
    assert result.returncode == 0, result.stderr[-3000:]
    with psycopg.connect(migrated_db) as conn:
        status = conn.execute(
            "SELECT window_start, value FROM rttm_metrics WHERE metric = 'consumer_status'"
            " AND labels->>'service' = 'recon' ORDER BY window_start"
        ).fetchall()
        lag = conn.execute(
            "SELECT DISTINCT value FROM rttm_metrics WHERE metric = 'queue_lag'"
            " AND labels->>'service' = 'recon'"
        ).fetchall()
    assert lag == [(500.0,)]
    assert status[0][1] == 0  # OK until the offset has stood still for 30 s
    assert status[-1][1] == 2  # then STALL: a lag, and no progress
    assert {value for _, value in status} <= {0.0, 2.0}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--group-regex", "orders-(", "--once"],
            "--group-regex 'orders-(': missing ), unterminated subpattern",
        ),
        (
            ["--group", "=settlement", "--once"],
            "--group '=settlement': expected GROUP or GROUP=SERVICE",
        ),
        (
            ["--group", "settlement=", "--once"],
            "--group 'settlement=': expected GROUP or GROUP=SERVICE",
        ),
        (["--once"], "no consumer groups to watch: give --group GROUP[=SERVICE] or --group-regex"),
        (["--group", "g", "--interval", "0"], "--interval must be > 0"),
    ],
)
def test_bad_flags_fail_in_one_line(args: list[str], said: str) -> None:
    unreachable = f"127.0.0.1:{free_port()}"
    result = lag_exporter(unreachable, *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert said in lines[0]


def test_an_unreachable_source_cluster_fails_a_once_run_in_one_line(rttm_cluster: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = lag_exporter(rttm_cluster, "--group", "g", "--once", "--source-brokers", dead)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert (
        f"rttm: error: source cluster {dead}: reading the committed offsets of group 'g'"
        in (lines[0])
    )


def test_watch_reads_named_groups_and_a_pattern() -> None:
    watch = Watch.parse(["settlement=settlement-engine", " risk "], "pricing-.*")
    assert dict(watch.named) == {"settlement": "settlement-engine", "risk": "risk"}
    assert watch.pattern is not None
    assert watch.pattern.fullmatch("pricing-quotes")
    with pytest.raises(RttmError, match="expected GROUP or GROUP=SERVICE"):
        Watch.parse(["="], None)


def test_a_named_group_is_said_once_when_it_goes_and_reported_again_when_it_commits(
    rttm_cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = business_topic(rttm_cluster, partitions=1)
    settings = KafkaSettings(brokers=rttm_cluster, extra={})
    emitter = Emitter(settings)
    exporter = LagExporter(settings, emitter, Watch.parse(["ledger=ledger-service"], None))
    admin = AdminClient({"bootstrap.servers": rttm_cluster})
    try:
        with caplog.at_level(logging.INFO, logger="rttm.lag.exporter"):
            rounds = [exporter.round(), exporter.round()]  # no offsets yet
            commit(rttm_cluster, "ledger", topic, {0: 1_000})
            rounds += [exporter.round(), exporter.round()]
            admin.delete_consumer_groups(["ledger"])["ledger"].result(timeout=10)
            rounds += [exporter.round(), exporter.round()]
            commit(rttm_cluster, "ledger", topic, {0: 1_150})
            rounds.append(exporter.round())
    finally:
        exporter.close()
        emitter.close(10)
    lags = [[s.produced_offset - s.consumed_offset for s in sent] for sent in rounds]
    assert lags == [[], [], [200], [200], [], [], [50]]
    said = [r.getMessage() for r in caplog.records if r.name == "rttm.lag.exporter"]
    assert said == [
        "consumer group ledger has no committed offsets: nothing to report until it commits",
        "reporting consumer group ledger as service ledger-service",
        "consumer group ledger is gone or has no committed offsets left: no longer reported",
        "reporting consumer group ledger as service ledger-service",
    ]
    assert exporter.counters.groups == 1  # watched all along, reported or not


def test_a_source_cluster_that_does_not_answer_fails_the_round_not_the_groups(
    rttm_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offsets, "REQUEST_TIMEOUT_S", 2.0)
    dead = KafkaSettings(brokers=f"127.0.0.1:{free_port()}", extra={})
    emitter = Emitter(KafkaSettings(brokers=rttm_cluster, extra={}))
    exporter = LagExporter(dead, emitter, Watch.parse([], "pricing-.*"))
    try:
        with pytest.raises(SourceError, match="listing consumer groups failed"):
            exporter.round()  # an empty list would have looked like every group gone
    finally:
        exporter.close()
        emitter.close(1)
    assert exporter.counters.failed_rounds == 1
    assert exporter.counters.last_error.startswith("listing consumer groups failed")


def test_source_settings_are_rttms_unless_a_source_cluster_is_named(tmp_path: Path) -> None:
    rttm = KafkaSettings(brokers="rttm:9092", extra={"security.protocol": "SSL"})
    args = argparse.Namespace(source_brokers=None, source_config=None)
    assert lag_commands.source_settings(args, rttm, {}) == rttm
    business = tmp_path / "business.properties"
    business.write_text(
        "# the business cluster\nsecurity.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
    )
    args = argparse.Namespace(source_brokers="biz:9093", source_config=str(business))
    assert lag_commands.source_settings(args, rttm, {}) == KafkaSettings(
        brokers="biz:9093",
        extra={"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"},
    )
    args = argparse.Namespace(source_brokers="biz:9093", source_config=None)
    assert lag_commands.source_settings(args, rttm, {}).extra == {}  # not RTTM's TLS files
    business.write_text("security.protocol\n")
    args = argparse.Namespace(source_brokers="biz:9093", source_config=str(business))
    with pytest.raises(ConfigError, match=rf"^--source-config: {business}:1: expected key=value$"):
        lag_commands.source_settings(args, rttm, {})
