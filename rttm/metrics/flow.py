"""The metrics dataflow (docs/design.md §5.2): Kafka → shard facts → windows → merge → PostgreSQL.

    raw batches ─► split per shard (trade / queue partition / service) ─► shard: windows,
    trades, queues, watermark ─► merge: add shards up, derive metrics, alert rules ─► sink

Like the ingestion, items are batches until the shard step; from there they are per-window
summaries, so the per-event cost is decoding plus a few dictionary updates.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from rttm.alerts.rules import Rule
from rttm.core.stream.budget import METRICS_ROUND_MESSAGES
from rttm.core.stream.source import RawBatch, RttmKafkaSource
from rttm.metrics.events import facts_by_shard
from rttm.metrics.merge import MergeLogic, MetricsOutput
from rttm.metrics.settings import MetricsSettings
from rttm.metrics.shard import EngineConfig, ShardLogic, ShardReport
from rttm.metrics.store import MetricsSink

FLOW_ID = "rttm_metrics"
#: Consumer group id the metrics readers name (required by librdkafka, never committed).
READER_GROUP = "rttm-metrics-reader"
_MERGE_KEY = "all"


def _to_merge(item: tuple[str, ShardReport]) -> tuple[str, ShardReport]:
    return _MERGE_KEY, item[1]


def _drop_key(item: tuple[str, MetricsOutput]) -> MetricsOutput:
    return item[1]


def add_engine(
    raw: Stream[RawBatch], config: EngineConfig, rules: Iterable[Rule]
) -> Stream[MetricsOutput]:
    """The engine's steps after a stream of raw batches; returns the merge step's output."""
    chunks = op.flat_map("split", raw, partial(facts_by_shard, shards=config.shards))
    reports = op.stateful("shard", chunks, partial(ShardLogic, config))
    merged = op.stateful(
        "merge", op.map("to_merge", reports, _to_merge), partial(MergeLogic, config, tuple(rules))
    )
    return op.map("drop_key", merged, _drop_key)


def build_flow(settings: MetricsSettings, *, publish: bool = True) -> Dataflow:
    """The metrics flow for ``settings``; ``publish=False`` writes alerts only to the table."""
    flow = Dataflow(FLOW_ID)
    source = RttmKafkaSource(
        settings.kafka_config,
        settings.topics,
        settings.partitions,
        settings.tail,
        heartbeat=True,
        group_id=READER_GROUP,
        round_messages=METRICS_ROUND_MESSAGES,
    )
    raw = op.input("kafka", flow, source)
    outputs = add_engine(raw, settings.engine, settings.rules)
    sink = MetricsSink(
        settings.database_url,
        settings.kafka_config if publish else None,
        settings.delivery,
        settings.rules,
    )
    op.output("postgres", outputs, sink)
    return flow
