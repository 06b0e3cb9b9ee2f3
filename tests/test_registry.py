"""The topic registry spells docs/design.md §1 exactly; everything else reads it."""

from __future__ import annotations

import pytest

from rttm.core.contracts import DlqEvent, ErrorEvent, LogEvent, QueueMetrics, TradeEvent
from rttm.core.decode import Accepted, decode_message
from rttm.core.registry import TOPICS, UnknownTopicError, all_tables, spec_for
from rttm_emit import topics as emit_topics
from tests.samples import SAMPLE_MESSAGES, encode

# docs/design.md §1.1 and §2 (and the README's table), key fields joined by " + ".
DOCUMENTED_TOPICS = [
    ("rttm.trade.events", "trade_id", "rttm-trade-consumer", "rttm_trade_events", TradeEvent),
    (
        "rttm.queue.metrics",
        "topic_name + partition",
        "rttm-queue-consumer",
        "rttm_queue_metrics",
        QueueMetrics,
    ),
    ("rttm.dlq.events", "trade_id", "rttm-dlq-consumer", "rttm_dlq_events", DlqEvent),
    ("rttm.error.events", "service_name", "rttm-error-consumer", "rttm_error_events", ErrorEvent),
    ("rttm.log.events", "service_name", "rttm-log-consumer", "rttm_parsed_logs", LogEvent),
]


def test_registry_matches_design_table() -> None:
    assert [
        (s.name, " + ".join(s.key_fields), s.consumer_group, s.table, s.struct) for s in TOPICS
    ] == DOCUMENTED_TOPICS


def test_the_server_stores_every_topic_of_the_producer_package_as_it_is() -> None:
    assert [(s.name, s.struct, s.key_fields) for s in TOPICS] == [
        (t.name, t.struct, t.key_fields) for t in emit_topics.TOPICS
    ]
    assert all(isinstance(spec, emit_topics.Topic) for spec in TOPICS)


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        ("rttm.trade.events", "T123"),
        ("rttm.queue.metrics", "trade-input-2"),
        ("rttm.dlq.events", "T124"),
        ("rttm.error.events", "pms-core"),
        ("rttm.log.events", "analytics-service"),
    ],
)
def test_key_rule_of_each_topic(topic: str, key: str) -> None:
    result = decode_message(topic, None, encode(SAMPLE_MESSAGES[topic]), 0, 0, 0)
    assert isinstance(result, Accepted)
    assert spec_for(topic).key_of(result.event) == key
    assert emit_topics.BY_NAME[topic].key_of(result.event) == key


def test_columns_rename_queue_coordinates_and_end_with_provenance() -> None:
    trade = spec_for("rttm.trade.events")
    assert "queue_partition" in trade.columns
    assert "queue_offset" in trade.columns
    assert "partition" not in trade.columns
    assert "offset" not in trade.columns
    for spec in TOPICS:
        assert spec.columns[-3:] == ("dedupe_key", "kafka_partition", "kafka_offset")
        assert spec.time_field in spec.payload_fields


def test_unknown_topic_error_lists_known_ones() -> None:
    with pytest.raises(UnknownTopicError, match=r"unknown topic 'rttm\.nope'; known topics: rttm"):
        spec_for("rttm.nope")


def test_all_tables_are_the_five_plus_rejects() -> None:
    assert all_tables() == (
        "rttm_trade_events",
        "rttm_queue_metrics",
        "rttm_dlq_events",
        "rttm_error_events",
        "rttm_parsed_logs",
        "rttm_ingest_rejects",
    )
