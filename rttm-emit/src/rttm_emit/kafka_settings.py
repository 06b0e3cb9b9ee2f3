"""Where the emitter's Kafka producer connects, and with which extra librdkafka settings.

``RTTM_KAFKA_BROKERS`` names the bootstrap servers (a comma list; :data:`DEFAULT_BROKERS`
when unset), ``RTTM_KAFKA_CONFIG`` a ``.properties`` file of further librdkafka settings
(TLS, SASL). RTTM's server reads the same variables with these functions.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

ENV_BROKERS = "RTTM_KAFKA_BROKERS"
ENV_KAFKA_CONFIG = "RTTM_KAFKA_CONFIG"
#: Brokers when ``RTTM_KAFKA_BROKERS`` is unset: Kafka's usual default, and the port
#: ``rttm up`` gives its local broker when that port is free.
DEFAULT_BROKERS = "localhost:9092"

#: librdkafka logs every failed connection attempt; clients route it here, not to stderr.
KAFKA_LOG = logging.getLogger("rttm.kafka")


class KafkaConfigError(ValueError):
    """A Kafka setting is malformed or refused by librdkafka; the message shows no value."""


def brokers_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    """``RTTM_KAFKA_BROKERS`` without blanks around the names; ``None`` when unset or blank."""
    if brokers := env.get(ENV_BROKERS, "").strip():
        return ",".join(b.strip() for b in brokers.split(",") if b.strip())
    return None


def read_kafka_config(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Extra librdkafka settings from the file named by ``RTTM_KAFKA_CONFIG``.

    The file holds ``key=value`` lines (``#`` comments), as Kafka client ``.properties``
    files do, e.g. ``security.protocol=SSL``. Values are never echoed in errors.

    Raises:
        KafkaConfigError: the file cannot be read, or a line is not ``key=value``.
    """
    path = env.get(ENV_KAFKA_CONFIG, "").strip()
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{ENV_KAFKA_CONFIG}: cannot read {path}: {exc.strerror}"
        raise KafkaConfigError(msg) from exc
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            msg = f"{ENV_KAFKA_CONFIG}: {path}:{number}: expected key=value"
            raise KafkaConfigError(msg)
        settings[name.strip()] = value.strip()
    return settings


#: Where librdkafka names the property it refused: ``… configuration property "name"``.
_REFUSED_PROPERTY = re.compile(r'property:? "([^"]*)"')


def rejected_config_message(error: object, extra: Mapping[str, str]) -> str:
    """One line for a client librdkafka refused to build, naming the key, never a value.

    librdkafka's own message quotes the value (``Invalid value "…" for configuration
    property "sasl.password"``), and values may be passwords: only a key of ``extra`` is
    repeated.
    """
    text = str(error)
    found = _REFUSED_PROPERTY.search(text)
    named = found.group(1) if found else None
    keys = [named] if named in extra else [k for k in extra if f'"{k}"' in text]
    if not keys:
        return f"{ENV_KAFKA_CONFIG}: librdkafka rejects the client configuration (values not shown)"
    if "No such configuration property" in text:
        return f"{ENV_KAFKA_CONFIG}: {keys[0]} is not a librdkafka setting"
    return f"{ENV_KAFKA_CONFIG}: librdkafka rejects the value of {keys[0]} (not shown)"


@dataclass(frozen=True)
class KafkaSettings:
    """Everything needed to build a librdkafka client config."""

    brokers: str
    extra: Mapping[str, str] = field(repr=False)  # may hold SASL passwords

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """``RTTM_KAFKA_BROKERS`` (default :data:`DEFAULT_BROKERS`) and ``RTTM_KAFKA_CONFIG``.

        Raises:
            KafkaConfigError: the ``RTTM_KAFKA_CONFIG`` file is unreadable or malformed.
        """
        brokers = brokers_from_env(env)
        return cls(
            brokers=DEFAULT_BROKERS if brokers is None else brokers, extra=read_kafka_config(env)
        )

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A librdkafka config: bootstrap servers, the extra file, then ``overrides``.

        librdkafka's own log lines go to the ``rttm.kafka`` logger.
        """
        return {"bootstrap.servers": self.brokers, "logger": KAFKA_LOG, **self.extra, **overrides}

    def rejected(self, error: object) -> Exception:
        """The exception to raise when librdkafka refuses a client built from these settings.

        A :class:`KafkaConfigError` naming the refused key of :attr:`extra`, never a value;
        RTTM's server settings return its own error type instead.
        """
        return KafkaConfigError(rejected_config_message(error, self.extra))
