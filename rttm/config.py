"""Configuration from the environment (12-factor), with the local stack as the default.

``RTTM_KAFKA_BROKERS`` and ``RTTM_DATABASE_URL`` point RTTM at real servers; when either is
unset, the address of the local stack started by ``rttm up`` is used instead.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rttm.errors import RttmError
from rttm.stack import LocalStack, running_stack

ENV_BROKERS = "RTTM_KAFKA_BROKERS"
ENV_DATABASE_URL = "RTTM_DATABASE_URL"
ENV_KAFKA_CONFIG = "RTTM_KAFKA_CONFIG"
ENV_STATE_DIR = "RTTM_STATE_DIR"


#: librdkafka logs every failed connection attempt; clients route it here, not to stderr.
KAFKA_LOG = logging.getLogger("rttm.kafka")


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
    """An address of the running local stack, or a clear error naming ``variable``."""
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
    if brokers := env.get(ENV_BROKERS, "").strip():
        return ",".join(b.strip() for b in brokers.split(",") if b.strip())
    return _from_local_stack(env, ENV_BROKERS, lambda stack: stack.kafka_brokers)


def database_url(env: Mapping[str, str] = os.environ) -> str:
    """Libpq URL: ``RTTM_DATABASE_URL``, else the running local stack's PostgreSQL."""
    if url := env.get(ENV_DATABASE_URL, "").strip():
        return url
    return _from_local_stack(env, ENV_DATABASE_URL, lambda stack: stack.database_url)


def kafka_config(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Extra librdkafka settings from the file named by ``RTTM_KAFKA_CONFIG``.

    The file holds ``key=value`` lines (``#`` comments), as Kafka client ``.properties``
    files do, e.g. ``security.protocol=SSL``. Values are never echoed in errors.
    """
    path = env.get(ENV_KAFKA_CONFIG, "").strip()
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{ENV_KAFKA_CONFIG}: cannot read {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            msg = f"{ENV_KAFKA_CONFIG}: {path}:{number}: expected key=value"
            raise ConfigError(msg)
        settings[name.strip()] = value.strip()
    return settings


#: Where librdkafka names the property it refused: ``… configuration property "name"``.
_REFUSED_PROPERTY = re.compile(r'property:? "([^"]*)"')


def rejected_kafka_config(error: object, extra: Mapping[str, str]) -> ConfigError:
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
        msg = f"{ENV_KAFKA_CONFIG}: librdkafka rejects the client configuration (values not shown)"
    elif "No such configuration property" in text:
        msg = f"{ENV_KAFKA_CONFIG}: {keys[0]} is not a librdkafka setting"
    else:
        msg = f"{ENV_KAFKA_CONFIG}: librdkafka rejects the value of {keys[0]} (not shown)"
    return ConfigError(msg)


@dataclass(frozen=True)
class KafkaSettings:
    """Everything needed to build a librdkafka client config."""

    brokers: str
    extra: Mapping[str, str] = field(repr=False)  # may hold SASL passwords

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> KafkaSettings:
        """Resolve brokers and the extra config file from the environment."""
        return cls(brokers=kafka_brokers(env), extra=kafka_config(env))

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A librdkafka config: bootstrap servers, the extra file, then ``overrides``.

        librdkafka's own log lines go to the ``rttm.kafka`` logger.
        """
        return {"bootstrap.servers": self.brokers, "logger": KAFKA_LOG, **self.extra, **overrides}
