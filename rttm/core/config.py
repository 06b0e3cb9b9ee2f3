"""Configuration from the environment (12-factor), with the local stack as the default.

``RTTM_KAFKA_BROKERS`` and ``RTTM_DATABASE_URL`` point RTTM at real servers; when either is
unset, the address of the local stack started by ``rttm up`` is used instead.

The Kafka settings are the producer package's (:mod:`rttm_emit.kafka_settings`, one source
of truth); the server adds the local-stack fallback and its own error type.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Self

from rttm.core.errors import RttmError
from rttm_emit import kafka_settings
from rttm_emit.kafka_settings import ENV_BROKERS, ENV_KAFKA_CONFIG, KAFKA_LOG, KafkaConfigError

if TYPE_CHECKING:
    from rttm.stack import LocalStack

ENV_DATABASE_URL = "RTTM_DATABASE_URL"
ENV_STATE_DIR = "RTTM_STATE_DIR"

__all__ = [
    "ENV_BROKERS",
    "ENV_DATABASE_URL",
    "ENV_KAFKA_CONFIG",
    "ENV_STATE_DIR",
    "KAFKA_LOG",
    "ConfigError",
    "KafkaSettings",
    "database_url",
    "kafka_brokers",
    "kafka_config",
    "rejected_kafka_config",
    "state_dir",
]


class ConfigError(RttmError):
    """A setting is missing or malformed."""


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where the local stack keeps its data and pid files (``RTTM_STATE_DIR``).

    Defaults to ``$XDG_STATE_HOME/rttm`` (``~/.local/state/rttm``).
    """
    if explicit := env.get(ENV_STATE_DIR):
        return Path(explicit).expanduser().absolute()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rttm"


def _from_local_stack(
    env: Mapping[str, str], variable: str, address: Callable[[LocalStack], str]
) -> str:
    """An address of the running local stack, or a clear error naming ``variable``.

    The stack (a developer's tool, above this module) is looked up only when a server is
    not named: a deployment never imports it.
    """
    from rttm.stack import running_stack

    stack = running_stack(state_dir(env))
    try:
        if stack is not None:
            return address(stack)
    except LookupError:
        pass
    msg = f"{variable} is not set and no local stack provides it: run `rttm up` or set {variable}"
    raise ConfigError(msg)


def kafka_brokers(env: Mapping[str, str] = os.environ) -> str:
    """Bootstrap servers: ``RTTM_KAFKA_BROKERS``, else the running local stack's broker."""
    if (brokers := kafka_settings.brokers_from_env(env)) is not None:
        return brokers
    return _from_local_stack(env, ENV_BROKERS, lambda stack: stack.kafka_brokers)


def database_url(env: Mapping[str, str] = os.environ) -> str:
    """Libpq URL: ``RTTM_DATABASE_URL``, else the running local stack's PostgreSQL."""
    if url := env.get(ENV_DATABASE_URL, "").strip():
        return url
    return _from_local_stack(env, ENV_DATABASE_URL, lambda stack: stack.database_url)


def kafka_config(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Extra librdkafka settings from the file named by ``RTTM_KAFKA_CONFIG``.

    :func:`rttm_emit.kafka_settings.read_kafka_config`, failing with a :class:`ConfigError`.
    """
    try:
        return kafka_settings.read_kafka_config(env)
    except KafkaConfigError as exc:
        raise ConfigError(str(exc)) from exc.__cause__


def rejected_kafka_config(error: object, extra: Mapping[str, str]) -> ConfigError:
    """One line for a client librdkafka refused to build, naming the key, never a value."""
    return ConfigError(kafka_settings.rejected_config_message(error, extra))


class KafkaSettings(kafka_settings.KafkaSettings):
    """The producer package's settings, resolved and failing as RTTM's commands do.

    :meth:`from_env` falls back to the running local stack's broker when
    ``RTTM_KAFKA_BROKERS`` is unset (the package's own default is localhost:9092), and
    refused settings raise :class:`ConfigError`, which the CLI prints as one line.
    """

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        """Resolve brokers and the extra config file from the environment."""
        return cls(brokers=kafka_brokers(env), extra=kafka_config(env))

    def rejected(self, error: object) -> ConfigError:
        """A :class:`ConfigError` naming the refused key, never a value."""
        return rejected_kafka_config(error, self.extra)
