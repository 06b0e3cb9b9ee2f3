"""Configuration from the environment: defaults, the extra librdkafka file, clear errors."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

import rttm_emit
from rttm.cli.ingest_commands import SHARDS_MARKER, _check_shards
from rttm.core import config
from rttm.core.config import ConfigError, KafkaSettings
from rttm.core.errors import RttmError


def test_brokers_from_environment_are_normalised(tmp_path: Path) -> None:
    env = {"RTTM_KAFKA_BROKERS": " a:9092, b:9093 ,", "RTTM_STATE_DIR": str(tmp_path)}
    assert config.kafka_brokers(env) == "a:9092,b:9093"


def test_database_url_from_environment_wins(tmp_path: Path) -> None:
    env = {"RTTM_DATABASE_URL": "postgresql://x@db/rttm", "RTTM_STATE_DIR": str(tmp_path)}
    assert config.database_url(env) == "postgresql://x@db/rttm"


def test_state_dir_defaults_to_xdg_state_home(tmp_path: Path) -> None:
    assert config.state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "rttm"
    assert config.state_dir({"RTTM_STATE_DIR": str(tmp_path / "s")}) == tmp_path / "s"


def test_kafka_config_file_is_parsed_and_merged_last(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("# TLS to the broker\nsecurity.protocol = SSL\n\nssl.ca.location=/ca.pem\n")
    env = {"RTTM_KAFKA_BROKERS": "b:1", "RTTM_KAFKA_CONFIG": str(path)}
    settings = KafkaSettings.from_env(env)
    assert settings.extra == {"security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}
    assert settings.client_config(**{"client.id": "x"}) == {
        "bootstrap.servers": "b:1",
        "logger": config.KAFKA_LOG,
        "security.protocol": "SSL",
        "ssl.ca.location": "/ca.pem",
        "client.id": "x",
    }


def test_kafka_config_errors_name_file_and_line_not_values(tmp_path: Path) -> None:
    path = tmp_path / "bad.properties"
    path.write_text("sasl.password=hunter2\nthis line has no equals sign\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: expected key=value") as info:
        config.kafka_config({"RTTM_KAFKA_CONFIG": str(path)})
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.properties"):
        config.kafka_config({"RTTM_KAFKA_CONFIG": str(tmp_path / "missing.properties")})


def test_the_package_defaults_to_localhost_the_server_to_the_local_stack(tmp_path: Path) -> None:
    assert rttm_emit.KafkaSettings.from_env({}).brokers == "localhost:9092"
    env = {"RTTM_STATE_DIR": str(tmp_path / "state")}
    with pytest.raises(ConfigError, match="RTTM_KAFKA_BROKERS is not set and no local stack"):
        KafkaSettings.from_env(env)
    given = {**env, "RTTM_KAFKA_BROKERS": " a:9092, b:9093 ,"}
    assert KafkaSettings.from_env(given) == KafkaSettings("a:9092,b:9093", {})
    assert rttm_emit.KafkaSettings.from_env(given) == rttm_emit.KafkaSettings("a:9092,b:9093", {})


def test_the_package_fails_with_its_own_error_and_the_same_words(tmp_path: Path) -> None:
    env = {"RTTM_KAFKA_CONFIG": str(tmp_path / "missing.properties")}
    with pytest.raises(rttm_emit.KafkaConfigError, match=r"cannot read .*missing\.properties"):
        rttm_emit.KafkaSettings.from_env(env)
    extra = {"no.such.key": "S3cret-Value"}
    with pytest.raises(rttm_emit.KafkaConfigError, match=r"no\.such\.key is not a") as raised:
        rttm_emit.Emitter(rttm_emit.KafkaSettings(brokers="127.0.0.1:1", extra=extra))
    assert "S3cret" not in str(raised.value)
    assert not isinstance(raised.value, ConfigError)  # the server's settings raise that one


def test_shard_marker_guards_a_recovery_directory(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _check_shards(fresh, 3)
    assert (fresh / SHARDS_MARKER).read_text() == "3\n"
    _check_shards(fresh, 4)  # growing is fine and remembered
    assert (fresh / SHARDS_MARKER).read_text() == "4\n"
    with pytest.raises(RttmError, match="holds state for 4 shards; RTTM_SHARDS=3 is fewer"):
        _check_shards(fresh, 3)
    _check_shards(fresh, 4)
    assert (fresh / SHARDS_MARKER).read_text() == "4\n"
    (fresh / SHARDS_MARKER).write_text("two\n")
    with pytest.raises(RttmError, match="expected a shard count, found 'two'"):
        _check_shards(fresh, 2)


def test_a_store_without_the_marker_is_judged_by_its_snapshots(tmp_path: Path) -> None:
    made = tmp_path / "made"  # python -m bytewax.recovery: parts, nothing in them yet
    made.mkdir()
    init_db_dir(made, 2)  # type: ignore[no-untyped-call]
    _check_shards(made, 1)
    assert (made / SHARDS_MARKER).read_text() == "1\n"
    run = tmp_path / "run"  # run by python -m bytewax.run, which writes no marker
    run.mkdir()
    init_db_dir(run, 2)  # type: ignore[no-untyped-call]
    with closing(sqlite3.connect(run / "part-1.sqlite3")) as db, db:
        db.executemany(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, 1, NULL)",
            [("rttm_ingest.dedupe", "shard-2"), ("rttm_ingest.kafka", "rttm.trade.events-0")],
        )
    with pytest.raises(RttmError, match="holds state for 3 shards; RTTM_SHARDS=2 is fewer"):
        _check_shards(run, 2)
    assert not (run / SHARDS_MARKER).exists()  # refused: nothing written
    _check_shards(run, 3)
    assert (run / SHARDS_MARKER).read_text() == "3\n"
