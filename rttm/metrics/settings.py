"""Metrics-engine settings from the environment, checked before the flow starts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from rttm.alerts import receivers
from rttm.alerts.receivers import Delivery
from rttm.alerts.rules import Rule, load_rules
from rttm.core import config
from rttm.core.config import ConfigError, KafkaSettings
from rttm.core.durations import parse_duration
from rttm.core.flow_settings import FlowSettings, check_schema, tail, topic_partitions
from rttm.core.registry import TOPICS
from rttm.metrics import pipeline
from rttm.metrics.limits import Limits
from rttm.metrics.shard import EngineConfig

ENV_PIPELINE = "RTTM_PIPELINE"
ENV_ALERT_RULES = "RTTM_ALERT_RULES"
ENV_WINDOW = "RTTM_METRICS_WINDOW"
ENV_LATENESS = "RTTM_METRICS_LATENESS"
ENV_SHARDS = "RTTM_METRICS_SHARDS"
ENV_CORRECTION = "RTTM_METRICS_CORRECTION"
DEFAULT_WINDOW = "10s"
DEFAULT_LATENESS = "5s"
#: How far back in event time a late event still corrects its closed window.
DEFAULT_CORRECTION = "1h"
#: The longest horizon: a day of windows kept (8,640 of 10 s) and their ids remembered.
MAX_CORRECTION_S = 86_400.0
DEFAULT_SHARDS = 2
MAX_SHARDS = 64


@dataclass(frozen=True)
class MetricsSettings(FlowSettings):
    """Everything the metrics flow needs, resolved and checked."""

    engine: EngineConfig = field(kw_only=True)
    rules: tuple[Rule, ...] = field(kw_only=True)
    delivery: Delivery = field(kw_only=True, default_factory=Delivery)


def _duration(env: Mapping[str, str], name: str, default: str) -> float:
    raw = env.get(name, "").strip() or default
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        msg = f"{name}: {exc}"
        raise ConfigError(msg) from None
    return seconds


def _file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw) if raw else None


def pipeline_from_env(env: Mapping[str, str] = os.environ) -> pipeline.Pipeline:
    """The pipeline of ``RTTM_PIPELINE``, or the default one."""
    return pipeline.load(_file(env, ENV_PIPELINE))


def window_s(env: Mapping[str, str] = os.environ) -> float:
    """The metrics window's length in seconds (``RTTM_METRICS_WINDOW``)."""
    window = _duration(env, ENV_WINDOW, DEFAULT_WINDOW)
    if window < 1 or not window.is_integer():
        msg = f"{ENV_WINDOW} must be a whole number of seconds, at least 1s, got {window:g}s"
        raise ConfigError(msg)
    return window


def engine_config(env: Mapping[str, str] = os.environ) -> EngineConfig:
    """Window, lateness, shards, pipeline and caps from the environment (no servers needed)."""
    window = window_s(env)
    lateness = _duration(env, ENV_LATENESS, DEFAULT_LATENESS)
    correction = _duration(env, ENV_CORRECTION, DEFAULT_CORRECTION)
    if not 0 <= correction <= MAX_CORRECTION_S:
        msg = (
            f"{ENV_CORRECTION} must be from 0s (no corrections) to 1d, got {correction:g}s:"
            " the engine keeps every window of the horizon"
        )
        raise ConfigError(msg)
    raw_shards = env.get(ENV_SHARDS, "").strip() or str(DEFAULT_SHARDS)
    if not raw_shards.isdigit() or not 1 <= int(raw_shards) <= MAX_SHARDS:
        msg = f"{ENV_SHARDS} must be an integer from 1 to {MAX_SHARDS}, got {raw_shards!r}"
        raise ConfigError(msg)
    return EngineConfig(
        pipeline=pipeline_from_env(env),
        window_s=window,
        lateness_s=lateness,
        correction_s=correction,
        shards=int(raw_shards),
        limits=Limits.from_env(env),
    )


def from_env(env: Mapping[str, str] = os.environ) -> MetricsSettings:
    """Resolve and check the settings: configuration files first, then the servers."""
    engine = engine_config(env)
    rules = load_rules(_file(env, ENV_ALERT_RULES))
    delivery = receivers.from_env(env)
    follow = tail(env)
    kafka = KafkaSettings.from_env(env)
    url = config.database_url(env)
    check_schema(url)
    partitions = topic_partitions(kafka, TOPICS)
    sources = frozenset(
        f"{topic}/{index}" for topic, count in partitions.items() for index in range(count)
    )
    return MetricsSettings(
        kafka=kafka,
        database_url=url,
        topics=TOPICS,
        partitions=partitions,
        tail=follow,
        engine=replace(engine, sources=sources),
        rules=rules,
        delivery=delivery,
    )
