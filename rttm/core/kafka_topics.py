"""Create and describe the ``rttm.*`` topics, as the registry lists them."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, untyped
    AdminClient,
    NewTopic,
    OffsetSpec,
)

from rttm.core.config import KAFKA_LOG, KafkaSettings, rejected_kafka_config
from rttm.core.errors import RttmError
from rttm.core.registry import OUTPUT_TOPICS, TOPICS

DEFAULT_PARTITIONS = 6
DEFAULT_RETENTION_DAYS = 3.0
DEFAULT_REPLICATION = 1
#: Seconds an admin request may take before the broker is declared unreachable.
ADMIN_TIMEOUT_S = 5.0
_MS_PER_DAY = 86_400_000
#: A Kafka partition: (topic, partition index).
Where = tuple[str, int]


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the broker reports it: partition count and end offset per partition."""

    name: str
    partitions: int
    end_offsets: tuple[int, ...]

    @property
    def messages(self) -> int:
        """Sum of end offsets: messages ever written (before retention deletes any)."""
        return sum(self.end_offsets)


class _Admin(AdminClient):
    """An admin client that keeps librdkafka's last connection error.

    A metadata timeout only says "transport failure"; the error callback has the why
    (refused, TLS certificate not trusted, SASL rejected), which the operator needs. A
    broker that closes the connection unanswered (a plaintext client at a TLS listener)
    shows only in the log, as a ``FAIL`` line: that is kept too.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.last_error = ""
        self.last_failure = ""
        log = logging.Logger(KAFKA_LOG.name)  # librdkafka's lines: noted, then passed on
        log.addHandler(_Note(self))
        try:
            super().__init__(settings.client_config(error_cb=self._remember, logger=log))
        except (KafkaException, ValueError, TypeError) as exc:
            raise rejected_kafka_config(exc, settings.extra) from None

    def _remember(self, error: KafkaError) -> None:
        # "1/1 brokers are down" follows the error that says why, if there is one.
        if error.code() == KafkaError._ALL_BROKERS_DOWN and self.last_error:
            return
        self.last_error = _without_noise(error.str())

    def why(self, error: KafkaError) -> str:
        """The best reason known for ``error``, a failed request."""
        self.poll(0)  # serves the error callback and the log
        if self.last_failure and self.last_error.endswith("brokers are down"):
            return f"{self.last_failure} ({_CLOSED_HINT})"
        return self.last_error or error.str()


_CLOSED_HINT = "is it a TLS or SASL listener? set security.protocol in RTTM_KAFKA_CONFIG"


class _Note(logging.Handler):
    """Notes an admin client's last ``Disconnected`` line, then passes every line on."""

    def __init__(self, admin: _Admin) -> None:
        super().__init__()
        self._admin = admin

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "Disconnected" in text:
            self._admin.last_failure = _without_noise(text.split("]: ", 1)[-1])
        if KAFKA_LOG.isEnabledFor(record.levelno):  # handle() itself skips the level check
            KAFKA_LOG.handle(record)


#: What librdkafka wraps a connection error in: the broker's name (the address is in our
#: message already) and the client's state machine, whose timings vary from run to run.
_BROKER_PREFIX = re.compile(r"^(?:\w+://)?\S+/(?:bootstrap|\d+): ")
_STATE_SUFFIX = re.compile(
    r"\s*\(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)$"
)


def _without_noise(text: str) -> str:
    """Librdkafka's error text without the broker prefix and the state suffix."""
    return _STATE_SUFFIX.sub("", _BROKER_PREFIX.sub("", text))


def _admin(settings: KafkaSettings) -> _Admin:
    return _Admin(settings)


def partition_counts(settings: KafkaSettings, admin: _Admin | None = None) -> dict[str, int]:
    """Every topic on the broker → partition count; a clear error if the broker is silent."""
    admin = admin or _admin(settings)
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        why = admin.why(exc.args[0])
        msg = f"cannot reach kafka at {settings.brokers} within {ADMIN_TIMEOUT_S:.0f} s: {why}"
        raise RttmError(msg) from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def create_topics(
    settings: KafkaSettings,
    partitions: int = DEFAULT_PARTITIONS,
    retention_days: float = DEFAULT_RETENTION_DAYS,
    replication: int = DEFAULT_REPLICATION,
    names: Iterable[str] | None = None,
) -> list[str]:
    """Create the registry's topics (or ``names``) that do not exist yet; returns those created.

    Existing topics are left as they are (their partition count is shown by ``describe``).
    """
    if partitions < 1 or replication < 1 or retention_days <= 0:
        msg = "partitions and replication must be >= 1 and retention must be > 0 days"
        raise RttmError(msg)
    admin = _admin(settings)
    existing = partition_counts(settings, admin)
    config = {"retention.ms": str(int(retention_days * _MS_PER_DAY)), "cleanup.policy": "delete"}
    if names is None:
        names = [spec.name for spec in TOPICS] + list(OUTPUT_TOPICS)
    wanted = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication, config=config)
        for name in names
        if name not in existing
    ]
    if not wanted:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(wanted, request_timeout=ADMIN_TIMEOUT_S).items():
        try:
            future.result()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # created meanwhile by a concurrent `rttm topics create`
            msg = f"cannot create topic {name} on {settings.brokers}: {error.str()}"
            raise RttmError(msg) from None
        created.append(name)
    return created


def describe_topics(settings: KafkaSettings) -> list[TopicInfo]:
    """The registry's topics that exist, with their end offsets (log-end / high watermark)."""
    admin = _admin(settings)
    existing = partition_counts(settings, admin)
    present = {spec.name: existing[spec.name] for spec in TOPICS if spec.name in existing}
    ends = _offsets(admin, present, OffsetSpec.latest(), "end")  # type: ignore[no-untyped-call]
    return [
        TopicInfo(name, count, tuple(ends[(name, p)] for p in range(count)))
        for name, count in present.items()
    ]


def start_offsets(settings: KafkaSettings, partitions: Mapping[str, int]) -> dict[Where, int]:
    """The oldest offset each partition still holds (its log start: retention moves it)."""
    spec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    return _offsets(_admin(settings), partitions, spec, "start")


def _offsets(
    admin: _Admin, partitions: Mapping[str, int], spec: OffsetSpec, what: str
) -> dict[Where, int]:
    request = {
        TopicPartition(name, part): spec
        for name, count in partitions.items()
        for part in range(count)
    }
    found: dict[Where, int] = {}
    if not request:
        return found
    for tp, future in admin.list_offsets(request, request_timeout=ADMIN_TIMEOUT_S).items():
        try:
            found[(tp.topic, tp.partition)] = future.result().offset
        except KafkaException as exc:
            msg = f"cannot read {what} offset of {tp.topic}[{tp.partition}]: {exc.args[0].str()}"
            raise RttmError(msg) from None
    return found


def topic_ids(settings: KafkaSettings, names: Iterable[str]) -> dict[str, str]:
    """Each topic's id (Kafka >= 2.8): a topic deleted and created again gets a new one.

    Topics the broker gives no id (an older broker answers the all-zero id) are left out.
    """
    admin = _admin(settings)
    futures = admin.describe_topics(TopicCollection(list(names)), request_timeout=ADMIN_TIMEOUT_S)
    ids: dict[str, str] = {}
    for name, future in futures.items():
        try:
            topic_id = str(future.result().topic_id)
        except KafkaException as exc:
            msg = f"cannot describe topic {name} on {settings.brokers}: {exc.args[0].str()}"
            raise RttmError(msg) from None
        if topic_id.strip("A=") and topic_id != "None":
            ids[name] = topic_id
    return ids
