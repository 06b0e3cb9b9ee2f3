"""The ingestion dataflow (docs/design.md §5.1): Kafka → decode → shard → dedupe → PostgreSQL.

Items are batches, not messages, from source to sink: one raw batch per ``consume()`` call,
then one chunk per shard. Bytewax's per-item cost is paid per batch, and the per-message
work is only librdkafka, msgspec and COPY.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from rttm.core.stream.source import RawBatch, RttmKafkaSource
from rttm.ingest.chunks import split_batch
from rttm.ingest.dedupe import dedupe_step
from rttm.ingest.settings import IngestSettings
from rttm.ingest.sink import PostgresSink

FLOW_ID = "rttm_ingest"


def build_flow(settings: IngestSettings, *, commit_offsets: bool = True) -> Dataflow:
    """The ingestion flow for ``settings`` (see the module docstring)."""
    flow = Dataflow(FLOW_ID)
    source = RttmKafkaSource(
        settings.kafka_config,
        settings.topics,
        settings.partitions,
        settings.tail,
        positions=settings.positions,
    )
    raw = op.input("kafka", flow, source)
    write(raw, settings, settings.kafka_config if commit_offsets else None)
    return flow


def write(
    raw: Stream[RawBatch], settings: IngestSettings, kafka_config: Mapping[str, Any] | None
) -> None:
    """Decode, shard, dedupe and write ``raw`` batches: everything after the source.

    ``kafka_config``: where to commit the written offsets to the consumer groups (None:
    no commits, e.g. for batches that come from no consumer).
    """
    chunks = op.flat_map("decode_and_shard", raw, partial(split_batch, shards=settings.shards))
    unique = op.stateful_map("dedupe", chunks, dedupe_step(settings.dedupe_capacity))
    sink = PostgresSink(settings.database_url, kafka_config, settings.shards)
    op.output("postgres", unique, sink)
