"""Ingestion settings from the environment, checked before the flow starts (fail fast)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from rttm.core import config
from rttm.core.config import ConfigError, KafkaSettings
from rttm.core.flow_settings import FlowSettings, check_schema, tail, topic_partitions
from rttm.core.kafka_topics import Where
from rttm.core.registry import TOPICS, TopicSpec, spec_for
from rttm.ingest.chunks import DEFAULT_SHARDS
from rttm.ingest.dedupe import DEFAULT_CAPACITY
from rttm.ingest.resume import resume_positions

ENV_TOPICS = "RTTM_TOPICS"
ENV_DEDUPE_CAPACITY = "RTTM_DEDUPE_CAPACITY"
ENV_SHARDS = "RTTM_SHARDS"
#: Each shard holds a database connection; more than this is a typo, not a plan.
MAX_SHARDS = 64


@dataclass(frozen=True)
class IngestSettings(FlowSettings):
    """Everything the ingestion flow needs, resolved and checked."""

    dedupe_capacity: int = DEFAULT_CAPACITY
    shards: int = DEFAULT_SHARDS
    #: Where each partition resumes (the database's record; absent: from the beginning).
    positions: Mapping[Where, int] = field(default_factory=dict)


def selected_topics(env: Mapping[str, str]) -> tuple[TopicSpec, ...]:
    """``RTTM_TOPICS`` (comma list of topic names), or every topic."""
    raw = env.get(ENV_TOPICS, "").strip()
    if not raw:
        return TOPICS
    try:
        return tuple(spec_for(name.strip()) for name in raw.split(",") if name.strip())
    except ValueError as exc:
        msg = f"{ENV_TOPICS}: {exc}"
        raise ConfigError(msg) from None


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        msg = f"{name} must be a positive integer, got {raw!r}"
        raise ConfigError(msg)
    return int(raw)


def from_env(env: Mapping[str, str] = os.environ) -> IngestSettings:
    """Resolve and check the ingestion settings: configuration first, then the servers."""
    topics = selected_topics(env)
    follow = tail(env)
    capacity = _positive_int(env, ENV_DEDUPE_CAPACITY, DEFAULT_CAPACITY)
    shards = _positive_int(env, ENV_SHARDS, DEFAULT_SHARDS)
    if shards > MAX_SHARDS:
        msg = f"{ENV_SHARDS} must be at most {MAX_SHARDS} (a connection each), got {shards}"
        raise ConfigError(msg)
    kafka = KafkaSettings.from_env(env)
    url = config.database_url(env)
    check_schema(url)
    partitions = topic_partitions(kafka, topics)
    return IngestSettings(
        kafka=kafka,
        database_url=url,
        topics=topics,
        partitions=partitions,
        tail=follow,
        dedupe_capacity=capacity,
        shards=shards,
        positions=resume_positions(kafka, url, partitions, shards),
    )
