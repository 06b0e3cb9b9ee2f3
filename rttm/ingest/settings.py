"""Ingestion settings from the environment, checked before the flow starts (fail fast)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rttm import config
from rttm.config import ConfigError, KafkaSettings
from rttm.db.connect import connect, describe
from rttm.db.migrate import applied_versions, migrations
from rttm.errors import RttmError
from rttm.ingest.chunks import DEFAULT_SHARDS
from rttm.ingest.dedupe import DEFAULT_CAPACITY
from rttm.kafka_topics import partition_counts
from rttm.registry import TOPICS, TopicSpec, spec_for

ENV_TOPICS = "RTTM_TOPICS"
ENV_TAIL = "RTTM_TAIL"
ENV_DEDUPE_CAPACITY = "RTTM_DEDUPE_CAPACITY"
ENV_SHARDS = "RTTM_SHARDS"
#: Each shard holds a database connection; more than this is a typo, not a plan.
MAX_SHARDS = 64


@dataclass(frozen=True)
class IngestSettings:
    """Everything the ingestion flow needs, resolved and checked."""

    kafka: KafkaSettings
    database_url: str = field(repr=False)  # may hold a password
    topics: tuple[TopicSpec, ...]
    partitions: Mapping[str, int]
    tail: bool
    dedupe_capacity: int
    shards: int = DEFAULT_SHARDS

    @property
    def kafka_config(self) -> dict[str, Any]:
        """The librdkafka settings: brokers plus the ``RTTM_KAFKA_CONFIG`` extras."""
        return self.kafka.client_config()


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


def tail(env: Mapping[str, str]) -> bool:
    """``RTTM_TAIL``: ``1`` (default) keeps following; ``0`` stops at every partition's end."""
    raw = env.get(ENV_TAIL, "1").strip()
    if raw not in ("0", "1"):
        msg = f"{ENV_TAIL} must be 0 or 1, got {raw!r}"
        raise ConfigError(msg)
    return raw == "1"


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        msg = f"{name} must be a positive integer, got {raw!r}"
        raise ConfigError(msg)
    return int(raw)


def topic_partitions(kafka: KafkaSettings, topics: tuple[TopicSpec, ...]) -> dict[str, int]:
    """Partition count of each topic; fails if the broker is unreachable or a topic missing."""
    existing = partition_counts(kafka)
    missing = [spec.name for spec in topics if spec.name not in existing]
    if missing:
        msg = f"topics missing on {kafka.brokers}: {', '.join(missing)} (run `rttm topics create`)"
        raise RttmError(msg)
    return {spec.name: existing[spec.name] for spec in topics}


def check_schema(url: str) -> None:
    """Fail unless the database answers and every migration is applied."""
    with connect(url, autocommit=True) as conn:
        applied = applied_versions(conn)
    pending = [m.path.name for m in migrations() if m.version not in applied]
    if pending:
        msg = (f"database {describe(url)} is not migrated (pending: {', '.join(pending)}):"
               " run `rttm db migrate`")  # fmt: skip
        raise RttmError(msg)


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
    return IngestSettings(
        kafka=kafka, database_url=url, topics=topics,
        partitions=topic_partitions(kafka, topics), tail=follow, dedupe_capacity=capacity,
        shards=shards,
    )  # fmt: skip
