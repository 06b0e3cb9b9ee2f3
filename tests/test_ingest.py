"""The ingestion flow end to end, real broker and PostgreSQL (docs/design.md §3, §5.1)."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from rttm.core.config import KafkaSettings
from rttm.core.contracts import ID_MAX_CHARS
from rttm.core.db import partitions
from rttm.core.registry import BY_NAME, COLUMN_RENAMES, REJECTS_TABLE, TOPICS
from rttm.core.stream import stats as source_stats
from support.kafka import produce
from tests.ingest_helpers import (
    committed_offsets,
    counts,
    create_topics,
    ingest,
    payload,
    rows,
)
from tests.samples import SAMPLE_MESSAGES

pytestmark = pytest.mark.integration
TRADES = "rttm.trade.events"


@pytest.fixture
def topics(kafka: KafkaSettings) -> KafkaSettings:
    create_topics(kafka)
    return kafka


def test_design_examples_of_all_five_topics_are_stored_intact(
    topics: KafkaSettings, migrated_db: str
) -> None:
    produce(topics.brokers, [(t, b"k", payload(ex)) for t, ex in SAMPLE_MESSAGES.items()])
    ingest(topics, migrated_db)
    for topic, example in SAMPLE_MESSAGES.items():
        spec = BY_NAME[topic]
        columns = [COLUMN_RENAMES.get(f, f) for f in example]
        stored = rows(migrated_db, spec.table, columns)
        assert len(stored) == 1, topic
        expected = tuple(
            datetime.fromisoformat(v) if f.endswith("_time") else v for f, v in example.items()
        )
        assert stored[0] == expected, topic
        (provenance,) = rows(migrated_db, spec.table, ["dedupe_key", "kafka_offset", "event_id"])
        assert provenance[0].startswith(f"k:{topic}/")
        assert provenance[1:] == (0, None)
    assert counts(migrated_db)[REJECTS_TABLE] == 0


def test_a_trades_events_are_stored_in_kafka_order(topics: KafkaSettings, migrated_db: str) -> None:
    steps = [f"STEP_{n:03d}" for n in range(300)]
    messages = [
        (
            TRADES,
            b"T-ordered",
            payload({**SAMPLE_MESSAGES[TRADES], "trade_id": "T-ordered", "event_type": step}),
        )
        for step in steps
    ]
    produce(topics.brokers, messages)
    ingest(topics, migrated_db)
    with psycopg.connect(migrated_db) as conn:
        stored = conn.execute(
            "SELECT event_type, kafka_partition, kafka_offset, ingested_at FROM rttm_trade_events"
            " WHERE trade_id = 'T-ordered' ORDER BY kafka_offset"
        ).fetchall()
    assert [r[0] for r in stored] == steps
    assert len({r[1] for r in stored}) == 1
    commit_times = [r[3] for r in stored]
    assert commit_times == sorted(commit_times), "a later event was committed before an earlier one"


def test_same_event_id_twice_is_one_row(topics: KafkaSettings, migrated_db: str) -> None:
    event = payload({**SAMPLE_MESSAGES[TRADES], "event_id": "ev-1"})
    produce(topics.brokers, [(TRADES, b"T123", event)] * 2)
    other_topic = payload({**SAMPLE_MESSAGES["rttm.log.events"], "event_id": "ev-1"})
    produce(topics.brokers, [("rttm.log.events", b"analytics-service", other_topic)])
    ingest(topics, migrated_db)
    assert rows(migrated_db, "rttm_trade_events", ["dedupe_key", "event_id"]) == [
        ("e:ev-1", "ev-1")
    ]
    assert counts(migrated_db)["rttm_parsed_logs"] == 1  # event ids are per table


def test_event_id_repeated_across_runs_and_beyond_the_dedupe_window_is_one_row(
    topics: KafkaSettings, migrated_db: str
) -> None:
    first = [
        (TRADES, b"T123", payload({**SAMPLE_MESSAGES[TRADES], "event_id": f"e{n}"}))
        for n in range(50)
    ]
    produce(topics.brokers, first)
    ingest(topics, migrated_db, RTTM_DEDUPE_CAPACITY="2")
    produce(topics.brokers, first[:10])  # producer retries after RTTM wrote the originals
    ingest(topics, migrated_db, RTTM_DEDUPE_CAPACITY="2")
    assert counts(migrated_db)["rttm_trade_events"] == 50


def test_identical_content_without_event_id_at_two_offsets_is_two_rows(
    topics: KafkaSettings, migrated_db: str
) -> None:
    event = payload(SAMPLE_MESSAGES[TRADES])
    produce(topics.brokers, [(TRADES, b"T123", event)] * 2)
    ingest(topics, migrated_db)
    stored = rows(migrated_db, "rttm_trade_events", ["trade_id", "kafka_offset"])
    assert sorted(stored) == [("T123", 0), ("T123", 1)]


def test_replaying_every_topic_adds_no_row(topics: KafkaSettings, migrated_db: str) -> None:
    messages = [
        (topic, b"k", payload({**example, "event_id": None if n % 2 else f"id-{topic}-{n}"}))
        for n in range(200)
        for topic, example in SAMPLE_MESSAGES.items()
    ]
    produce(topics.brokers, [*messages, (TRADES, b"k", b"not json")])
    ingest(topics, migrated_db)
    first = counts(migrated_db)
    assert first == {**{spec.table: 200 for spec in TOPICS}, REJECTS_TABLE: 1}
    ingest(topics, migrated_db)  # resumes where the database says: nothing new to store
    assert counts(migrated_db) == first
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("DELETE FROM rttm_ingest_progress")  # positions lost: a full replay
    read = source_stats.COUNTERS.read
    ingest(topics, migrated_db)
    assert source_stats.COUNTERS.read - read == len(messages) + 1
    assert counts(migrated_db) == first


MALFORMED: list[tuple[str, bytes | None]] = [
    ("invalid JSON", b"{not json"),
    ("invalid UTF-8", payload(SAMPLE_MESSAGES[TRADES]).replace(b"T123", b"T\xff23")),
    ("empty value", b""),
    ("null value", None),
    ("array", b"[1, 2]"),
    (
        "missing field",
        payload({k: v for k, v in SAMPLE_MESSAGES[TRADES].items() if k != "trade_id"}),
    ),
    ("wrong type", payload({**SAMPLE_MESSAGES[TRADES], "offset": "7"})),
    ("naive timestamp", payload({**SAMPLE_MESSAGES[TRADES], "event_time": "2025-12-17T11:05:49"})),
    ("negative offset", payload({**SAMPLE_MESSAGES[TRADES], "offset": -1})),
    ("empty string", payload({**SAMPLE_MESSAGES[TRADES], "service_name": ""})),
    ("id too long", payload({**SAMPLE_MESSAGES[TRADES], "trade_id": "T" * (ID_MAX_CHARS + 1)})),
    ("beyond bigint", payload({**SAMPLE_MESSAGES[TRADES], "offset": 2**63})),
    ("NUL in text", payload({**SAMPLE_MESSAGES[TRADES], "message": "a\x00b"})),
]


def test_malformed_messages_become_rejects_and_the_flow_goes_on(
    topics: KafkaSettings, migrated_db: str
) -> None:
    good = payload(SAMPLE_MESSAGES[TRADES])
    messages = []
    for _name, value in MALFORMED:
        messages += [(TRADES, b"T123", value), (TRADES, b"T123", good)]
    produce(topics.brokers, messages)
    ingest(topics, migrated_db)
    stored = rows(migrated_db, REJECTS_TABLE, ["kafka_offset", "raw_key", "raw_value", "reason"])
    by_offset = {r[0]: r for r in stored}
    assert sorted(by_offset) == list(range(0, 2 * len(MALFORMED), 2))
    for n, (name, value) in enumerate(MALFORMED):
        offset, key, raw, reason = by_offset[2 * n]
        assert (key, raw) == (b"T123", value), name
        assert reason.startswith(f"{TRADES}["), name
        assert f"]@{offset}: " in reason, name
    assert counts(migrated_db)["rttm_trade_events"] == len(MALFORMED)


def test_offsets_are_committed_to_each_topics_consumer_group(
    topics: KafkaSettings, migrated_db: str
) -> None:
    messages = [
        (t, f"k{n}".encode(), payload(ex)) for n in range(40) for t, ex in SAMPLE_MESSAGES.items()
    ]
    produce(topics.brokers, messages)
    ingest(topics, migrated_db)
    for spec in TOPICS:
        committed = committed_offsets(topics, spec.name, spec.consumer_group)
        with psycopg.connect(migrated_db) as conn:
            query = sql.SQL("SELECT kafka_partition, max(kafka_offset) + 1 FROM {} GROUP BY 1")
            ends = conn.execute(query.format(sql.Identifier(spec.table))).fetchall()
        assert {p: offset for p, offset in enumerate(committed) if offset >= 0} == dict(ends)


def test_topic_subset_ingests_only_those_topics(topics: KafkaSettings, migrated_db: str) -> None:
    produce(topics.brokers, [(t, b"k", payload(ex)) for t, ex in SAMPLE_MESSAGES.items()])
    ingest(topics, migrated_db, RTTM_TOPICS="rttm.dlq.events, rttm.log.events")
    assert {t: n for t, n in counts(migrated_db).items() if n} == {
        "rttm_dlq_events": 1,
        "rttm_parsed_logs": 1,
    }


def test_days_without_partition_are_created_by_the_sink(
    topics: KafkaSettings, migrated_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    today = partitions.today()
    days = [today + timedelta(days=n) for n in (100, 101, 300)]  # beyond `db migrate`'s week
    far = [*days, date(2093, 1, 1)]  # beyond the horizon: the default partition keeps it
    messages = [
        (
            TRADES,
            b"T9",
            payload({**SAMPLE_MESSAGES[TRADES], "event_time": f"{day.isoformat()}T00:00:00Z"}),
        )
        for day in far
    ]
    produce(topics.brokers, messages)
    with caplog.at_level(logging.WARNING):
        ingest(topics, migrated_db)
    with psycopg.connect(migrated_db) as conn:
        where = conn.execute(
            "SELECT tableoid::regclass::text FROM rttm_trade_events ORDER BY event_time"
        ).fetchall()
    assert [w for (w,) in where] == [
        *(f"rttm_trade_events_p{day:%Y%m%d}" for day in days),
        "rttm_trade_events_default",
    ]
    assert "database unavailable" not in caplog.text


def test_stack_traces_in_free_text_are_stored_whole(
    topics: KafkaSettings, migrated_db: str
) -> None:
    trace = "".join(f"  at com.example.Pms.update(Pms.java:{n})\n" for n in range(2_600))
    reason = trace[:100_000]  # a 100 kB DLQ reason
    error_message = ("x" * 899_000) + "end"  # close to a default Kafka message's 1 MB
    log_message = "é" * 400_000  # 800 kB of two-byte UTF-8
    messages = [
        (
            "rttm.dlq.events",
            b"T1",
            payload({**SAMPLE_MESSAGES["rttm.dlq.events"], "reason": reason}),
        ),
        (
            "rttm.error.events",
            b"svc",
            payload({**SAMPLE_MESSAGES["rttm.error.events"], "error_message": error_message}),
        ),
        (
            "rttm.log.events",
            b"svc",
            json.dumps(
                {**SAMPLE_MESSAGES["rttm.log.events"], "message": log_message}, ensure_ascii=False
            ).encode(),
        ),
    ]
    produce(topics.brokers, messages)
    ingest(topics, migrated_db)
    assert counts(migrated_db)["rttm_ingest_rejects"] == 0
    assert rows(migrated_db, "rttm_dlq_events", ["reason"]) == [(reason,)]
    assert rows(migrated_db, "rttm_error_events", ["error_message"]) == [(error_message,)]
    assert rows(migrated_db, "rttm_parsed_logs", ["message"]) == [(log_message,)]
