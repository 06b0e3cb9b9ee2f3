"""``rttm trace / status / alerts`` and the web API on a known simulated run.

One run of the simulator (the default platform, faults included) goes through the real
broker, the ingestion flow and the metrics flow into PostgreSQL, once for the module; every
test then reads what an operator would see and compares it with the simulation.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bytewax.testing import run_main
from fastapi.testclient import TestClient

from benchmarks import simulated
from rttm.cli.main import build_parser
from rttm.config import KafkaSettings
from rttm.contracts import DlqEvent, Message, TradeEvent
from rttm.metrics import flow as metrics_flow
from rttm.metrics import settings as metrics_settings
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from rttm.web.app import create_app
from tests.ingest_helpers import REPO, create_topics, flow_env, ingest, produce
from tests.servers import migrated_database

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Run:
    url: str
    env: dict[str, str]
    events: list[Message]

    def trades(self) -> dict[str, list[TradeEvent]]:
        by_id: dict[str, list[TradeEvent]] = {}
        for event in self.events:
            if isinstance(event, TradeEvent):
                by_id.setdefault(event.trade_id, []).append(event)
        return by_id


@pytest.fixture(scope="module")
def run(postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    broker = start_broker(tmp_path_factory.mktemp("broker"), free_port())
    try:
        with migrated_database(postgres_admin_url, "rttm_views") as url:
            yield _filled(broker.bootstrap, url)
    finally:
        broker.stop()


def _filled(brokers: str, url: str) -> Run:
    """Simulated events through both flows into ``url``."""
    kafka = KafkaSettings(brokers=brokers, extra={})
    create_topics(kafka)
    events = simulated.events(120, rate=30, seed=9)
    produce(kafka.brokers, simulated.kafka_messages(events))
    ingest(kafka, url)
    env = flow_env(kafka, url)
    run_main(metrics_flow.build_flow(metrics_settings.from_env(env), publish=False))  # type: ignore[no-untyped-call]
    return Run(url, env, events)


def rttm(run: Run, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rttm", *args], env=run.env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_status_shows_the_simulated_platform(run: Run) -> None:
    result = rttm(run, "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    created = sum(1 for e in run.events
                  if isinstance(e, TradeEvent) and e.event_type == "TRADE_CREATED")  # fmt: skip
    assert data["trades"]["started"] == created
    stuck_ids = {t for t, events in run.trades().items()
                 if events[-1].event_type == "POSITION_UPDATED"}  # fmt: skip
    assert {s["trade_id"] for s in data["stuck"]} == stuck_ids
    assert "TradeStuck" in {a["rule"] for a in data["alerts"]["firing"]}
    lagging = [c for c in data["consumers"] if c["topic"] == "position-updates"]
    assert lagging
    assert lagging[0]["status"] in {"WARN", "STALL"}  # the scenario's lagging consumer
    dlq_total = sum(1 for e in run.events if isinstance(e, DlqEvent))
    assert sum(d["depth"] for d in data["dlq"]["depth"]) == dlq_total
    assert data["tps"]["series"]
    assert data["latency"]["e2e"]["p99"] > data["latency"]["e2e"]["p50"] > 0


def test_status_as_plain_text_when_piped(run: Run) -> None:
    result = rttm(run, "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("as of ")
    assert "TPS now " in out
    assert "\x1b[" not in out  # no colour codes when piped
    for title in ("consumers", "DLQ", "stuck trades", "alerts"):
        assert f"\n{title}\n" in out
    assert "TradeStuck" in out


def test_trace_of_a_completed_a_stuck_and_a_rejected_trade(run: Run) -> None:
    trades = run.trades()
    done = next(t for t, e in trades.items() if e[-1].event_type == "LEADERBOARD_UPDATED")
    data = json.loads(rttm(run, "trace", done, "--json").stdout)
    assert data["outcome"] == "completed"
    assert data["stage"] == "ranked"
    assert [e["event_type"] for e in data["events"]] == [e.event_type for e in trades[done]]
    assert data["events"][0]["since_previous_ms"] is None
    assert all(e["since_previous_ms"] >= 0 for e in data["events"][1:])

    stuck = next(t for t, e in trades.items() if e[-1].event_type == "POSITION_UPDATED")
    data = json.loads(rttm(run, "trace", stuck, "--json").stdout)
    assert data["outcome"] == "in flight"
    assert data["stuck"]["stage"] == "positioned"
    assert data["stuck"]["recovered_at"] is None
    text = rttm(run, "trace", stuck).stdout
    assert f"trade {stuck}: STUCK at positioned (pms-core)" in text

    rejected = next(t for t, e in trades.items() if e[-1].event_type == "VALIDATION_FAILED")
    data = json.loads(rttm(run, "trace", rejected, "--json").stdout)
    assert data["outcome"] == "rejected"
    assert [d["reason"] for d in data["dlq"]] == ["Schema validation failed"]


def test_trace_of_an_unknown_trade_is_one_line(run: Run) -> None:
    result = rttm(run, "trace", "NOPE-1")
    assert result.returncode == 1
    assert result.stderr == "rttm: error: no trade 'NOPE-1': no event of it is stored\n"


def test_alerts_lists_firing_and_recent(run: Run) -> None:
    data = json.loads(rttm(run, "alerts", "--json").stdout)
    assert "TradeStuck" in {a["rule"] for a in data["firing"]}
    assert data["recent"]
    states = Counter(a["state"] for a in data["recent"])
    assert states["firing"] >= 1
    text = rttm(run, "alerts").stdout
    assert text.startswith("active alerts\n")


def test_api_answers_what_the_cli_shows(run: Run) -> None:
    client = TestClient(create_app(run.url))
    status = client.get("/api/status")
    assert status.status_code == 200
    assert status.json() == json.loads(rttm(run, "status", "--json").stdout)
    assert "default-src 'self'" in status.headers["content-security-policy"]
    trade = next(iter(run.trades()))
    assert client.get(f"/api/trace/{trade}").json()["trade_id"] == trade
    missing = client.get("/api/trace/NOPE-1")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no trade 'NOPE-1'"}
    alerts = client.get("/api/alerts", params={"limit": 5}).json()
    assert len(alerts["recent"]) <= 5
    assert client.get("/api/status", params={"minutes": 0}).status_code == 422
    spec = client.get("/openapi.json").json()
    assert {"/api/status", "/api/alerts", "/api/trace/{trade_id}"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200
    assert "<html" in page.text.lower()


def test_metrics_endpoint_exposes_platform_and_rttm_health(run: Run) -> None:
    body = TestClient(create_app(run.url)).get("/metrics").text
    assert 'rttm_tps{service="pms-core"}' in body
    assert "rttm_consumer_status{" in body
    trades = sum(1 for e in run.events if isinstance(e, TradeEvent))
    # Messages durably ingested, once per partition (every shard records its own position).
    assert f'rttm_ingest_position_total{{topic="rttm.trade.events"}} {float(trades)}' in body
    assert "rttm_stuck_trades_open " in body
    assert 'rttm_alerts_firing{rule="TradeStuck",severity="critical"} ' in body


def test_api_says_when_the_database_is_away() -> None:
    client = TestClient(create_app(f"postgresql://rttm:pw@127.0.0.1:{free_port()}/rttm"))
    answer = client.get("/api/status")
    assert answer.status_code == 503
    assert answer.json() == {"detail": "database unavailable"}  # where is for the log only


def test_serve_binds_to_this_machine_by_default() -> None:
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1"


def test_dashboard_files_are_packaged() -> None:
    static = Path(REPO / "rttm" / "web" / "static")
    assert (static / "index.html").is_file()


def test_grafana_dashboard_queries_only_series_rttm_exposes(run: Run) -> None:
    body = TestClient(create_app(run.url)).get("/metrics").text
    exposed = {line.split("{")[0].split(" ")[0] for line in body.splitlines()
               if line and not line.startswith("#")}  # fmt: skip
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(re.findall(r"\brttm_[a-z0-9_]+", target["expr"]))
            assert names, target
            assert names <= exposed, (panel["title"], names - exposed)


def test_api_answers_only_its_own_host_names_when_told(run: Run) -> None:
    client = TestClient(create_app(run.url, allowed_hosts=["127.0.0.1", "localhost"]),
                        base_url="http://127.0.0.1:8765")  # fmt: skip
    assert client.get("/api/alerts").status_code == 200
    rebound = client.get("/api/alerts", headers={"host": "evil.example:8765"})
    assert rebound.status_code == 400


def test_cli_refuses_out_of_range_options(run: Run) -> None:
    for args in (["alerts", "--limit", "-1"], ["status", "--minutes", "0"],
                 ["status", "--watch", "--interval", "0"]):  # fmt: skip
        result = rttm(run, *args)
        assert result.returncode == 2
        assert "must be from" in result.stderr.splitlines()[-1]


def test_an_unmigrated_database_is_one_line_not_a_traceback(
    run: Run, new_database: Callable[[], str]
) -> None:
    empty = new_database()
    result = rttm(Run(empty, {**run.env, "RTTM_DATABASE_URL": empty}, []), "status")
    assert result.returncode == 1
    assert result.stderr.startswith("rttm: error: query failed on postgres at ")
    assert "(run `rttm db migrate`?)" in result.stderr
    assert "Traceback" not in result.stderr
    answer = TestClient(create_app(empty)).get("/api/status")
    assert answer.status_code == 503
