"""Settings every flow shares: servers, topics and their partitions, tail mode.

They are checked before the flow starts, so a problem is one line within seconds, not a
crash inside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rttm.core.config import ConfigError, KafkaSettings
from rttm.core.db.connect import connect, describe
from rttm.core.db.migrate import applied_versions, migrations
from rttm.core.errors import RttmError
from rttm.core.kafka_topics import partition_counts
from rttm.core.registry import TopicSpec

ENV_TAIL = "RTTM_TAIL"


@dataclass(frozen=True)
class FlowSettings:
    """What any RTTM dataflow needs: the servers and the partitions to read."""

    kafka: KafkaSettings
    database_url: str = field(repr=False)  # may hold a password
    topics: tuple[TopicSpec, ...]
    partitions: Mapping[str, int]
    tail: bool

    @property
    def kafka_config(self) -> dict[str, Any]:
        """The librdkafka settings: brokers plus the ``RTTM_KAFKA_CONFIG`` extras."""
        return self.kafka.client_config()


def tail(env: Mapping[str, str]) -> bool:
    """``RTTM_TAIL``: ``1`` (default) keeps following; ``0`` stops at every partition's end."""
    raw = env.get(ENV_TAIL, "1").strip()
    if raw not in ("0", "1"):
        msg = f"{ENV_TAIL} must be 0 or 1, got {raw!r}"
        raise ConfigError(msg)
    return raw == "1"


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
        msg = (
            f"database {describe(url)} is not migrated (pending: {', '.join(pending)}):"
            " run `rttm db migrate`"
        )
        raise RttmError(msg)
