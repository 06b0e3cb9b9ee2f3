"""rttm.emit, the queue-metrics reporter and rttm simulate against the real broker."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

import rttm_emit
from rttm import emit
from rttm.core import contracts, ids
from rttm.core.config import KafkaSettings
from rttm.core.contracts import QueueMetrics
from rttm.core.decode import Accepted, decode_message
from rttm.core.registry import BY_NAME, TOPICS
from rttm.emit import Emitter
from rttm.ops import schema_export
from rttm.queue_reporter import QueueMetricsReporter
from rttm.stack.processes import free_port
from rttm_emit import schemas
from tests.ingest_helpers import REPO, counts, create_topics, flow_env, ingest

pytestmark = pytest.mark.integration


def test_the_old_imports_are_the_rttm_emit_package() -> None:
    assert emit.Emitter is rttm_emit.Emitter
    assert emit.EmitCounters is rttm_emit.EmitCounters
    assert contracts.TradeEvent is rttm_emit.TradeEvent
    assert contracts.Message is rttm_emit.Message
    assert ids.uuid7 is rttm_emit.uuid7
    assert schema_export.export is schemas.export
    assert issubclass(KafkaSettings, rttm_emit.KafkaSettings)


def read_all(brokers: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of ``topic`` from the beginning."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"t-{uuid.uuid4()}",
            "enable.partition.eof": True,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out, eof = [], 0
    while eof < len(parts):
        for message in consumer.consume(1000, 1.0):
            error = message.error()
            if error is None:
                out.append((message.key(), message.value()))
            elif error.code() == KafkaError._PARTITION_EOF:
                eof += 1
    consumer.close()
    return out


def test_typed_calls_publish_valid_keyed_messages_with_ids_and_times(kafka: KafkaSettings) -> None:
    create_topics(kafka)
    emitter = Emitter(kafka)
    before = datetime.now(UTC)
    assert emitter.trade_event(
        trade_id="T1",
        service_name="pms-core",
        event_type="POSITION_UPDATED",
        event_status="SUCCESS",
    )
    assert emitter.queue_metrics(
        service_name="validation-service",
        topic_name="trade-input",
        partition=2,
        produced_offset=9,
        consumed_offset=7,
    )
    assert emitter.dlq_event(
        trade_id="T2",
        service_name="validation-service",
        topic_name="trade-dlq",
        reason="Schema validation failed",
    )
    assert emitter.error_event(
        service_name="pms-core", error_type="DB_TIMEOUT", error_message="Timeout"
    )
    assert emitter.log_event(
        service_name="analytics-service",
        log_level="WARN",
        trade_id="T3",
        log_category="PROCESSING_DELAY",
        message="slow",
    )
    assert emitter.close() == 0
    assert (emitter.counters.sent, emitter.counters.failed, emitter.counters.dropped) == (5, 0, 0)
    keys = {
        "rttm.trade.events": b"T1",
        "rttm.queue.metrics": b"trade-input-2",
        "rttm.dlq.events": b"T2",
        "rttm.error.events": b"pms-core",
        "rttm.log.events": b"analytics-service",
    }
    ids = []
    for spec in TOPICS:
        ((key, value),) = read_all(kafka.brokers, spec.name)
        assert key == keys[spec.name]
        result = decode_message(spec.name, key, value, 0, 0, 0)
        assert isinstance(result, Accepted)
        event_id = result.event.event_id
        assert event_id is not None
        assert uuid.UUID(event_id).version == 7
        ids.append(event_id)
        moment = getattr(result.event, spec.time_field)
        assert before <= moment <= datetime.now(UTC)
        assert b"null" not in (value or b"")  # unset optional fields are left out
    assert ids == sorted(ids)  # time-ordered in emission order


class _Failing:
    """Counters whose ``sent`` cannot be updated: a delivery report that raises."""

    failed = dropped = 0

    @property
    def sent(self) -> int:
        return 0

    @sent.setter
    def sent(self, value: int) -> None:
        msg = "a delivery report failed"
        raise RuntimeError(msg)


def test_a_failing_delivery_report_never_raises_into_the_caller(
    kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    create_topics(kafka)
    emitter = Emitter(kafka)
    emitter.counters = _Failing()  # type: ignore[assignment]
    assert emitter.error_event(service_name="svc", error_type="E", error_message="first")
    time.sleep(2)  # its delivery report waits to be served
    with caplog.at_level(logging.WARNING, logger="rttm.emit"):
        for n in range(1_000):  # the 1,000th call serves the reports
            assert emitter.error_event(service_name="svc", error_type="E", error_message=f"{n}")
        emitter.close()  # its flush meets the failing reports too: logged, not raised
    logged = [r.getMessage() for r in caplog.records if r.name == "rttm.emit"]
    assert any(
        "delivery reports failed: RuntimeError: a delivery report failed" in line for line in logged
    ), logged


def test_unreachable_broker_never_blocks_or_raises(caplog: pytest.LogCaptureFixture) -> None:
    dead = KafkaSettings(brokers=f"127.0.0.1:{free_port()}", extra={})
    emitter = Emitter(dead, queue_messages=1_000, extra={"message.timeout.ms": 1_000})
    slowest = 0.0
    with caplog.at_level(logging.WARNING, logger="rttm.emit"):
        for n in range(5_000):
            started = time.perf_counter()
            emitter.error_event(service_name="svc", error_type="E", error_message=f"m{n}")
            slowest = max(slowest, time.perf_counter() - started)
        left = emitter.close(timeout=3)
    assert slowest < 0.05
    counters = emitter.counters
    assert counters.dropped == 4_000  # the queue holds 1,000
    assert counters.sent == 0
    assert counters.failed == 1_000  # timed out (message.timeout.ms) or left at close
    assert left == 1_000 - (counters.failed - left)
    warnings = [r for r in caplog.records if r.name == "rttm.emit"]
    assert 1 <= len(warnings) <= 2  # at most once per interval, not per event
    assert "dropped" in warnings[0].getMessage()


def test_reporter_lag_equals_produced_minus_committed(kafka: KafkaSettings) -> None:
    create_topics(kafka)
    admin = AdminClient({"bootstrap.servers": kafka.brokers})
    for future in admin.create_topics([NewTopic("trade-input", 2, 1)]).values():
        future.result()
    # One record per batch: the local broker reports end offsets right only then
    # (docs/design.md §8).
    producer = Producer(
        {"bootstrap.servers": kafka.brokers, "linger.ms": 0, "batch.num.messages": 1}
    )
    for n in range(9):
        producer.produce("trade-input", b"x", partition=n % 2)
        producer.flush(10)
    group = Consumer({"bootstrap.servers": kafka.brokers, "group.id": "validation-consumer"})
    group.commit(offsets=[TopicPartition("trade-input", 0, 2)], asynchronous=False)
    group.close()
    emitter = Emitter(kafka)
    reporter = QueueMetricsReporter(
        "validation-consumer",
        ["trade-input"],
        service_name="validation-service",
        emitter=emitter,
        settings=kafka,
    )
    snapshots = reporter.report_once()
    reporter.stop()
    emitter.close()
    assert [(s.partition, s.produced_offset, s.consumed_offset) for s in snapshots] == [
        (0, 5, 2),  # 5 produced, 2 committed: lag 3
        (1, 4, 0),  # nothing committed: consumed from the low watermark, lag 4
    ]
    published = [
        decode_message("rttm.queue.metrics", k, v, 0, 0, 0)
        for k, v in read_all(kafka.brokers, "rttm.queue.metrics")
    ]
    assert sorted(
        (r.event.partition, r.event.produced_offset - r.event.consumed_offset)
        for r in published
        if isinstance(r, Accepted) and isinstance(r.event, QueueMetrics)
    ) == [(0, 3), (1, 4)]


def test_simulate_then_ingest_stores_exactly_what_the_summary_says(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    create_topics(kafka)
    summary_path = tmp_path / "summary.json"
    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rttm",
            "simulate",
            "--trades",
            "3000",
            "--fast",
            "--seed",
            "5",
            "--start",
            start,
            "--summary-json",
            str(summary_path),
        ],
        env=flow_env(kafka, migrated_db),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "simulated 3,000 trades" in result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["emitted"] == {"sent": summary["events"], "failed": 0, "dropped": 0}
    assert summary["trades"]["created"] == 3000
    ingest(kafka, migrated_db)
    stored = counts(migrated_db)
    assert stored.pop("rttm_ingest_rejects") == 0
    assert stored == {BY_NAME[t].table: n for t, n in summary["topics"].items()}


def test_values_the_contract_cannot_take_never_raise_into_the_caller() -> None:
    dead = KafkaSettings(brokers=f"127.0.0.1:{free_port()}", extra={})
    emitter = Emitter(dead)
    assert not emitter.trade_event(
        trade_id=None,  # type: ignore[arg-type]
        service_name="s",
        event_type="E",
        event_status="SUCCESS",
    )
    assert not emitter.emit("not an event")  # type: ignore[arg-type]
    assert emitter.counters.dropped == 2
    emitter.close(timeout=0)
