"""Where the ingestion resumes, checked against the broker and the database.

Recreated topics, removed shards and offsets that retention deleted; the flow runs in this
process against the real servers.
"""

from __future__ import annotations

import logging

import psycopg
import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, untyped
    AdminClient,
    NewTopic,
)

from rttm.core.config import KafkaSettings
from rttm.core.stream import stats as source_stats
from rttm.ingest.resume import resume_positions, still_kept
from support import workload
from support.kafka import produce
from tests.ingest_helpers import counts, create_topics, ingest, payload
from tests.samples import SAMPLE_MESSAGES

pytestmark = pytest.mark.integration
TRADES = "rttm.trade.events"


def trades(count: int, tag: str) -> list[tuple[str, bytes, bytes]]:
    example = SAMPLE_MESSAGES[TRADES]
    return [
        (
            TRADES,
            f"T{n}".encode(),
            payload({**example, "trade_id": f"T{n}", "event_id": f"{tag}-{n}"}),
        )
        for n in range(count)
    ]


def test_a_restart_reads_only_what_is_new(kafka: KafkaSettings, migrated_db: str) -> None:
    create_topics(kafka)
    first, second = workload.build(10_000, seed=1), workload.build(3_000, seed=2)
    workload.produce(kafka.brokers, first)
    ingest(kafka, migrated_db)
    read = source_stats.COUNTERS.read
    workload.produce(kafka.brokers, second)
    ingest(kafka, migrated_db)
    assert source_stats.COUNTERS.read - read == second.total
    assert counts(migrated_db)["rttm_trade_events"] == (
        first.distinct["rttm_trade_events"] + second.distinct["rttm_trade_events"]
    )


def test_a_topic_deleted_and_created_again_is_read_from_its_beginning(
    kafka: KafkaSettings, migrated_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    create_topics(kafka, partitions=2)
    produce(kafka.brokers, trades(300, "old"))
    ingest(kafka, migrated_db)
    admin = AdminClient({"bootstrap.servers": kafka.brokers})
    for future in admin.delete_topics([TRADES], request_timeout=10).values():
        future.result()
    for future in admin.create_topics([NewTopic(TRADES, 2, 1)], request_timeout=10).values():
        future.result()
    # More messages than before: the old positions exist in the new topic, and resuming
    # there would skip its first 300 messages.
    produce(kafka.brokers, trades(600, "new"))
    with caplog.at_level(logging.WARNING, logger="rttm.ingest.resume"):
        ingest(kafka, migrated_db)
    assert counts(migrated_db)["rttm_trade_events"] == 300 + 600
    assert f"{TRADES} was deleted and created again (topic id " in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rttm.ingest.resume"):
        ingest(kafka, migrated_db)  # the new id is recorded: a plain restart
    assert caplog.text == ""


def test_positions_of_removed_shards_are_folded_into_the_current_ones(
    kafka: KafkaSettings, migrated_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    create_topics(kafka, partitions=2)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for shard, offset in ((0, 100), (1, 90), (2, 40)):  # a run with three shards
            conn.execute(
                "INSERT INTO rttm_ingest_progress (topic, kafka_partition, shard, next_offset)"
                " VALUES (%s, 0, %s, %s)",
                (TRADES, shard, offset),
            )
    with caplog.at_level(logging.WARNING, logger="rttm.ingest.resume"):
        positions = resume_positions(kafka, migrated_db, {TRADES: 2}, shards=2)
    # Shard 2's messages from 40 on were not stored; partition 1, never written, starts at 0.
    assert positions == {(TRADES, 0): 40, (TRADES, 1): 0}
    assert "positions of shards 2 (RTTM_SHARDS is now 2) folded into the current shards" in (
        caplog.text
    )
    assert progress_rows(migrated_db, 0) == [(0, 40), (1, 40)]
    raised = resume_positions(kafka, migrated_db, {TRADES: 2}, shards=3)
    assert raised == {(TRADES, 0): 40, (TRADES, 1): 0}
    assert progress_rows(migrated_db, 0) == [(0, 40), (1, 40), (2, 40)]


def progress_rows(url: str, partition: int) -> list[tuple[int, int]]:
    """(shard, next offset) of the trade topic's ``partition``."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT shard, next_offset FROM rttm_ingest_progress"
            " WHERE topic = %s AND kafka_partition = %s ORDER BY shard",
            (TRADES, partition),
        ).fetchall()
    return [(int(shard), int(offset)) for shard, offset in rows]


def test_every_shard_has_a_position_before_the_flow_starts(
    kafka: KafkaSettings, migrated_db: str
) -> None:
    create_topics(kafka, partitions=1)
    produce(kafka.brokers, trades(100, "a"))
    assert resume_positions(kafka, migrated_db, {TRADES: 1}, shards=2) == {(TRADES, 0): 0}
    assert progress_rows(migrated_db, 0) == [(0, 0), (1, 0)]
    # A crash after shard 0's first commit, before shard 1's: shard 1's rows below 60 were
    # never written, so the partition must resume at 0, not at shard 0's position.
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("UPDATE rttm_ingest_progress SET next_offset = 60 WHERE shard = 0")
    assert resume_positions(kafka, migrated_db, {TRADES: 1}, shards=2) == {(TRADES, 0): 0}
    ingest(kafka, migrated_db)
    assert counts(migrated_db)["rttm_trade_events"] == 100


def test_an_offset_deleted_by_retention_resumes_at_the_oldest_message_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The rule alone: the local broker (Tansu, memory storage) neither applies retention nor
    # serves DeleteRecords, so its oldest offset is always 0.
    positions = {(TRADES, 0): 5, (TRADES, 1): 50}
    with caplog.at_level(logging.WARNING, logger="rttm.ingest.resume"):
        kept = still_kept(positions, {(TRADES, 0): 20, (TRADES, 1): 10})
    assert kept == {(TRADES, 0): 20, (TRADES, 1): 50}
    assert caplog.messages == [
        f"{TRADES}[0]: offsets 5 to 19 were deleted by retention before RTTM stored them;"
        " resuming at 20, the oldest message kept"
    ]
