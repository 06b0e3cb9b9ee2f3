"""The metrics flow pages through a real Alertmanager: a stuck trade fires and resolves.

``python -m bytewax.run dataflows.metrics`` follows the topics (``RTTM_TAIL=1``) with
one-second windows and a pipeline whose trades are stuck after 2 s, so a trade that stops
fires the shipped ``TradeStuck`` rule within seconds, and resolves when the trade moves on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rttm.core.config import KafkaSettings
from rttm.core.contracts import TradeEvent
from support.kafka import produce
from support.simulated import kafka_messages
from tests.alerting import Alertmanager, WebhookServer, wait_for
from tests.ingest_helpers import REPO, create_topics, flow_env

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).parent / "artifacts"
DASHBOARD = "http://rttm.example:8000"
TRADE = "T-STUCK-1"


def event(service: str, event_type: str, status: str = "SUCCESS") -> TradeEvent:
    return TradeEvent(
        trade_id=TRADE,
        service_name=service,
        event_type=event_type,
        event_status=status,
        event_time=datetime.now(UTC),
    )


def publish(kafka: KafkaSettings, *events: TradeEvent) -> None:
    produce(kafka.brokers, kafka_messages(events))


@pytest.fixture
def fast_pipeline(tmp_path: Path) -> Path:
    """The shipped pipeline, with trades stuck after 2 s of silence instead of 30 s."""
    text = resources.files("rttm.metrics").joinpath("default_pipeline.toml").read_text("utf-8")
    path = tmp_path / "pipeline.toml"
    path.write_text(
        text.replace('stuck_after = "30s"', 'stuck_after = "2s"').replace(
            'stuck_after = "60s"', 'stuck_after = "2s"'
        )
    )
    return path


@pytest.fixture
def start_flow(kafka: KafkaSettings, migrated_db: str, fast_pipeline: Path) -> Iterator[Any]:
    processes: list[subprocess.Popen[str]] = []

    def start(**receivers: str) -> subprocess.Popen[str]:
        env = flow_env(
            kafka,
            migrated_db,
            RTTM_TAIL="1",
            RTTM_METRICS_WINDOW="1s",
            RTTM_METRICS_LATENESS="1s",
            RTTM_PIPELINE=str(fast_pipeline),
            RTTM_DASHBOARD_URL=DASHBOARD,
            **receivers,
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.metrics"],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return process

    create_topics(kafka)
    yield start
    for process in processes:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)


def stuck_alerts(manager: Alertmanager) -> list[dict[str, Any]]:
    return [a for a in manager.alerts() if a["labels"]["alertname"] == "TradeStuck"]


def test_a_stuck_trade_fires_trade_stuck_in_alertmanager_and_resolves_when_it_moves(
    kafka: KafkaSettings, alertmanager: Alertmanager, webhook: WebhookServer, start_flow: Any
) -> None:
    start_flow(RTTM_ALERTMANAGER_URL=alertmanager.url)
    publish(
        kafka,
        event("simulation-service", "TRADE_CREATED"),
        event("trade-capture-service", "CAPTURE_SUCCESS"),
    )

    def fired() -> list[dict[str, Any]]:
        return stuck_alerts(alertmanager)

    def stuck_resolved() -> list[dict[str, Any]]:
        return [
            p
            for p in webhook.payloads()
            if p["status"] == "resolved" and p["groupLabels"] == {"alertname": "TradeStuck"}
        ]

    [alert] = wait_for(fired, timeout=60)
    assert alert["labels"] == {
        "alertname": "TradeStuck",
        "severity": "critical",
        "source": "rttm",
        "stage": "captured",
        "service": "trade-capture-service",
    }
    assert alert["annotations"]["summary"].startswith("Trades stopped after a stage")
    assert alert["annotations"]["description"] == (
        "Stuck after stage captured at trade-capture-service: 1 trade(s) with no event within"
        " the allowed time."
    )
    assert alert["generatorURL"] == f"{DASHBOARD}/#trade={TRADE}"
    assert alert["status"]["state"] == "active"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "alertmanager-alerts.json").write_text(json.dumps(alertmanager.alerts(), indent=2))

    publish(kafka, event("validation-service", "VALIDATION_FAILED", "FAILURE"))
    resolved = wait_for(stuck_resolved, timeout=60)[0]
    assert fired() == []
    # What Alertmanager's own webhook receiver sent on resolution: kept for the record.
    (ARTIFACTS / "alertmanager-resolved-webhook.json").write_text(json.dumps(resolved, indent=2))


def test_a_flow_killed_before_delivering_delivers_after_its_restart_once(
    kafka: KafkaSettings, migrated_db: str, webhook: WebhookServer, start_flow: Any
) -> None:
    webhook.stop()  # the receiver is away when the alert fires
    first = start_flow(RTTM_ALERT_WEBHOOK_URL=webhook.url)
    publish(
        kafka,
        event("simulation-service", "TRADE_CREATED"),
        event("trade-capture-service", "CAPTURE_SUCCESS"),
    )

    def owed() -> list[tuple[Any, ...]]:
        with psycopg.connect(migrated_db) as conn:
            return conn.execute(
                "SELECT status, attempts FROM rttm_alert_outbox"
                " WHERE rule = 'TradeStuck' AND state = 'firing' AND attempts > 0"
            ).fetchall()

    [(status, _attempts)] = wait_for(owed, timeout=60)
    assert status == "due"
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)

    webhook.start()
    start_flow(RTTM_ALERT_WEBHOOK_URL=webhook.url)

    def stuck_firing() -> list[dict[str, Any]]:
        alerts = [a for p in webhook.payloads() for a in p["alerts"]]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "TradeStuck" and a["status"] == "firing"
        ]

    wait_for(stuck_firing, timeout=60)
    time.sleep(3)  # time for a second delivery to show, were there one
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute(
            "SELECT status FROM rttm_alert_outbox WHERE rule = 'TradeStuck' AND state = 'firing'"
        ).fetchall()
    assert rows == [("delivered",)]
    assert len(stuck_firing()) == 1


@pytest.mark.parametrize(
    "command",
    [
        ("-m", "bytewax.run", "dataflows.metrics"),
        ("-m", "rttm", "metrics"),
        ("-m", "rttm", "serve", "--port", "0"),
    ],
)
def test_a_bad_receiver_url_stops_the_start_in_one_line(
    kafka: KafkaSettings, migrated_db: str, command: tuple[str, ...]
) -> None:
    env = flow_env(kafka, migrated_db, RTTM_ALERTMANAGER_URL="http://ops:pw@am:9093,am-2:9093")
    result = subprocess.run(
        [sys.executable, *command],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "rttm: error: RTTM_ALERTMANAGER_URL entry 2: 'am-2:9093' is not a URL: write it as"
        " http://HOST:PORT"
    )
    assert "pw" not in result.stderr
