"""``rttm trace / status / alerts`` and the web API on a known simulated run.

One run of the simulator (the default platform, faults included) goes through the real
broker, the ingestion flow and the metrics flow into PostgreSQL, once for the module; every
test then reads what an operator would see and compares it with the simulation.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bytewax.testing import run_main
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from rttm.cli.main import build_parser
from rttm.core.config import KafkaSettings
from rttm.core.contracts import DlqEvent, TradeEvent
from rttm.ingest import prometheus as ingest_prometheus
from rttm.metrics import flow as metrics_flow
from rttm.metrics import prometheus as metrics_prometheus
from rttm.metrics import settings as metrics_settings
from rttm.ops import health, metrics_port
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from rttm.web.app import create_app
from support import simulated
from support.kafka import produce
from tests.ingest_helpers import REPO, create_topics, flow_env, ingest
from tests.servers import Run, migrated_database, rttm

pytestmark = pytest.mark.integration


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


@dataclass(frozen=True)
class Exposition:
    """``/metrics`` of ``rttm serve`` and of a flow's metrics port, after both flows ran."""

    serve: str
    flows: str


@pytest.fixture(scope="module")
def exposition(run: Run) -> Exposition:
    serve = TestClient(create_app(run.url)).get("/metrics").text
    # Both flows ran in this process: their collectors hold what they counted, and a
    # metrics port serves them as ``rttm ingest`` / ``rttm metrics --metrics-port`` would.
    ingest_prometheus.register()
    metrics_prometheus.register()
    port = free_port()
    metrics_port.serve(port, health.Readiness([]))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
        flows = answer.read().decode()
    return Exposition(serve, flows)


def test_status_shows_the_simulated_platform(run: Run) -> None:
    result = rttm(run, "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    created = sum(
        1 for e in run.events if isinstance(e, TradeEvent) and e.event_type == "TRADE_CREATED"
    )
    assert data["trades"]["started"] == created
    stuck_ids = {
        t for t, events in run.trades().items() if events[-1].event_type == "POSITION_UPDATED"
    }
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


def sample(body: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` in exposition ``body``."""
    inner = ",".join(f'{label}="{value}"' for label, value in sorted(labels.items()))
    line = f"{name}{{{inner}}} " if labels else f"{name} "
    found = [row for row in body.splitlines() if row.startswith(line)]
    assert len(found) == 1, (line, found)
    return float(found[0].removeprefix(line))


def test_metrics_endpoint_exposes_platform_and_rttm_health(run: Run) -> None:
    body = TestClient(create_app(run.url)).get("/metrics").text
    trade_events = [e for e in run.events if isinstance(e, TradeEvent)]
    # Counters: every window's counts added up, equal to what was sent.
    for service, event_type in {(e.service_name, e.event_type) for e in trade_events}:
        sent = sum(
            1 for e in trade_events if (e.service_name, e.event_type) == (service, event_type)
        )
        assert (
            sample(body, "rttm_trade_events_total", event_type=event_type, service=service) == sent
        )
    created = sum(1 for e in trade_events if e.event_type == "TRADE_CREATED")
    assert sample(body, "rttm_trades_started_total") == created
    dlq = Counter((e.topic_name, e.reason) for e in run.events if isinstance(e, DlqEvent))
    for (topic, reason), sent in dlq.items():
        assert sample(body, "rttm_dlq_events_total", reason=reason, topic=topic) == sent
    assert "# TYPE rttm_trade_events_total counter" in body
    assert "rttm_tps" not in body  # a rate: rate() of the counter gives it
    # Latency as a summary in seconds, quantiles spelled as Prometheus does.
    assert "# TYPE rttm_e2e_latency_seconds summary" in body
    p50 = sample(body, "rttm_e2e_latency_seconds", quantile="0.5")
    assert 0 < p50 < sample(body, "rttm_e2e_latency_seconds", quantile="0.99") < 60
    assert "rttm_consumer_status{" in body
    assert 'rttm_queue_consumed_offset{partition="' in body
    trades = len(trade_events)
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


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title, expression)`` of every query of the Grafana dashboard."""
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        found += [(panel["title"], target["expr"]) for target in panel["targets"]]
    return found


def test_grafana_dashboard_queries_only_series_rttm_exposes(exposition: Exposition) -> None:
    exposed = set()  # every family's series, declared or with samples now
    for body in (exposition.serve, exposition.flows):
        for family in text_string_to_metric_families(body):
            exposed.add(family.name + ("_total" if family.type == "counter" else ""))
            exposed |= {found.name for found in family.samples}
    for title, expr in dashboard_queries():
        names = set(re.findall(r"\brttm_[a-z0-9_]+", expr))
        assert names, title
        assert names <= exposed, (title, names - exposed)
        # Every range follows the scrape interval Grafana knows (never a fixed [1m]).
        assert re.findall(r"\[([^\]]*)\]", expr) == ["$__rate_interval"] * expr.count("["), expr


def test_promtool_accepts_every_dashboard_query_as_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"rttm:dashboard_query_{n}", "expr": expr.replace("$__rate_interval", "1m")}
        for n, (_, expr) in enumerate(dashboard_queries())
    ]
    rule_file = tmp_path / "dashboard.rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: run ./dev setup (Debian package prometheus)"
    checked = subprocess.run(
        [binary, "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_api_answers_only_its_own_host_names_when_told(run: Run) -> None:
    client = TestClient(
        create_app(run.url, allowed_hosts=["127.0.0.1", "localhost"]),
        base_url="http://127.0.0.1:8765",
    )
    assert client.get("/api/alerts").status_code == 200
    rebound = client.get("/api/alerts", headers={"host": "evil.example:8765"})
    assert rebound.status_code == 400


def test_cli_refuses_out_of_range_options(run: Run) -> None:
    for args in (
        ["alerts", "--limit", "-1"],
        ["status", "--minutes", "0"],
        ["status", "--watch", "--interval", "0"],
    ):
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


def promtool_lint(exposition: str) -> str:
    """What ``promtool check metrics`` says of ``exposition`` (empty: nothing to fix)."""
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: run ./dev setup (Debian package prometheus)"
    checked = subprocess.run(
        [binary, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (checked.stdout + checked.stderr).strip()


def test_promtool_finds_nothing_to_fix_on_serve_and_the_flows_metrics_ports(
    exposition: Exposition,
) -> None:
    assert "rttm_hop_latency_seconds{" in exposition.serve
    assert promtool_lint(exposition.serve) == ""
    assert "rttm_ingest_rows_written_total " in exposition.flows
    assert "rttm_metrics_windows_finalized_total " in exposition.flows
    assert 'rttm_ingest_lag_messages{partition="0",topic="rttm.trade.events"}' in exposition.flows
    assert promtool_lint(exposition.flows) == ""
