"""The ingestion's steps in one process: Bytewax's testing source → decode and shard →
dedupe → a real PostgreSQL, without a broker.

The rest of the flow is tested against the real broker (``test_ingest``); here the batches
are made in the test, so that a replay, a malformed message and an event without an id are
exactly where the test puts them.
"""

from __future__ import annotations

from collections import Counter

import bytewax.operators as op
import psycopg
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka import Message as KafkaMessage

from rttm.core.config import KafkaSettings
from rttm.core.contracts import Message
from rttm.core.registry import BY_NAME, TOPICS
from rttm.core.stream.source import RawBatch
from rttm.ingest import flow as ingest_flow
from rttm.ingest import stats
from rttm.ingest.settings import IngestSettings
from support.simulated import events, raw_batches

pytestmark = pytest.mark.integration


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def test_batches_are_decoded_deduplicated_and_written_with_their_rejects(
    migrated_db: str,
) -> None:
    run: list[Message] = events(20, rate=10, seed=5)
    batches = raw_batches(run, partitions=2, batch=40)
    trade = next(b for b in batches if b.topic == "rttm.trade.events")
    end = max(
        b.next_offset for b in batches if (b.topic, b.partition) == (trade.topic, trade.partition)
    )
    # A producer's retry: the same events (same event_id) again, at new offsets.
    again = [
        KafkaMessage(
            topic=m.topic(),
            partition=trade.partition,
            offset=end + n,
            key=m.key(),
            value=m.value(),
            timestamp=(TIMESTAMP_CREATE_TIME, 2),
        )
        for n, m in enumerate(trade.messages)
    ]
    resent = RawBatch(trade.topic, trade.partition, again, end + len(again))
    # A replay of what was read (offsets below those read): written whole, the table decides.
    replayed = RawBatch(trade.topic, trade.partition, trade.messages, trade.next_offset)
    bad = KafkaMessage(
        topic=trade.topic,
        partition=7,
        offset=0,
        key=b"k",
        value=b"{not json",
        timestamp=(TIMESTAMP_CREATE_TIME, 1),
    )
    broken = RawBatch(trade.topic, 7, [bad], 1)
    settings = IngestSettings(
        kafka=KafkaSettings(brokers="127.0.0.1:1", extra={}),
        database_url=migrated_db,
        topics=TOPICS,
        partitions={spec.name: 8 for spec in TOPICS},
        tail=False,
    )
    flow = Dataflow("in_process_ingest")
    raw = op.input("batches", flow, TestingSource([*batches, replayed, resent, broken]))
    ingest_flow.write(raw, settings, kafka_config=None)
    duplicates = stats.COUNTERS.duplicates
    run_main(flow)  # type: ignore[no-untyped-call]

    sent = Counter(BY_NAME_OF[type(event)] for event in run)
    for topic, number in sent.items():
        assert count(migrated_db, BY_NAME[topic].table) == number, topic
    assert stats.COUNTERS.duplicates - duplicates == len(trade.messages)  # the retry
    with psycopg.connect(migrated_db) as conn:
        rejects = conn.execute(
            "SELECT topic, kafka_partition, kafka_offset, raw_value, reason"
            " FROM rttm_ingest_rejects"
        ).fetchall()
        assert [r[:4] for r in rejects] == [(trade.topic, 7, 0, b"{not json")]
        assert rejects[0][4].startswith("rttm.trade.events[7]@0: JSON is malformed")
        positions: dict[str, int] = dict(
            conn.execute(
                "SELECT topic || '/' || kafka_partition, min(next_offset) FROM rttm_ingest_progress"
                " GROUP BY topic, kafka_partition"
            ).fetchall()
        )
    assert positions[f"{trade.topic}/7"] == 1
    assert positions[f"{trade.topic}/{trade.partition}"] == resent.next_offset


BY_NAME_OF = {spec.struct: spec.name for spec in TOPICS}
