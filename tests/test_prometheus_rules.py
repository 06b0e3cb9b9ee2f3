"""``rttm rules export --prometheus``: promtool accepts the file, and Prometheus fires the
exported rules with the same labels and the same annotation text as RTTM renders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from rttm.alerts import templates
from rttm.alerts.notifications import manager_labels
from rttm.alerts.rules import Rule, load_rules
from tests.ingest_helpers import REPO


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: run ./dev setup (Debian package prometheus)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def export(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rttm", "rules", "export", "--prometheus", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_accepts_the_exported_shipped_rules(tmp_path: Path) -> None:
    out = tmp_path / "rttm.rules.yml"
    result = export(out)
    assert result.returncode == 0, result.stderr
    assert f"wrote 10 rules to {out}" in result.stderr
    checked = promtool("check", "rules", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout
    text = out.read_text()
    assert "# Not expressible in PromQL: RTTM finds stuck trades per trade" in text
    assert 'expr: "rttm_e2e_latency_seconds{quantile=\\"0.99\\"} * 1000 > 5000"' in text


def test_prometheus_fires_the_exported_rules_with_rttms_labels_and_text(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[rules]]\nname = "LagHuge"\nmetric = "queue_lag"\nmatch = { topic = "trade-valid" }\n'
        'op = ">"\nthreshold = 1e6\nfor = "1m"\nkeep_firing_for = "30s"\nseverity = "critical"\n'
        'summary = "{{ $labels.service }} lags {{ $value }} on {{ $labels.topic }}"\n'
        'description = "partition {{$labels.partition}}, missing label \\"{{ $labels.nope }}\\""\n'
        'runbook_url = "https://runbooks.example/lag"\nlabels = { team = "pms" }\n'
        '\n[[rules]]\nname = "DlqShare"\nmetric = "dlq_ratio"\nop = ">="\nthreshold = 0.25\n'
        'severity = "warning"\nsummary = "DLQ share {{ $value }}"\n'
        '\n[[rules]]\nname = "Slow"\nmetric = "e2e_latency_ms"\nmatch = { quantile = "p99" }\n'
        'op = ">"\nthreshold = 5000\nseverity = "warning"\nsummary = "p99 {{ $value }} ms"\n'
        '\n[[rules]]\nname = "NoTrades"\nmetric = "trades_started"\nop = "=="\nthreshold = 0\n'
        'severity = "critical"\n'
        '\n[[rules]]\nname = "Odd"\nmetric = "errors"\nmatch = { error_type = "💥\\"\\\\" }\n'
        'op = ">"\nthreshold = 0\nseverity = "info"\n'
    )
    out = tmp_path / "exported.yml"
    assert export(out, str(rules_file)).returncode == 0
    lag, dlq, slow, no_trades, _ = load_rules(rules_file)
    lag_labels = {"service": "pms-core", "topic": "trade-valid", "partition": "3"}
    series = 'rttm_queue_lag{service="pms-core",topic="trade-valid",partition="3"}'

    def expected(rule_value: float, labels: dict[str, str], rule: Rule) -> dict[str, str]:
        found = {
            "summary": templates.render(rule.summary, rule_value, labels),
            "description": templates.render(rule.description, rule_value, labels),
            "runbook_url": rule.runbook_url,
        }
        return {name: text for name, text in found.items() if text}

    def rttm_labels(rule: Rule, labels: dict[str, str]) -> dict[str, str]:
        # What RTTM sends Alertmanager (promtool adds alertname itself).
        sent = manager_labels(rule.name, {**labels, **dict(rule.labels)}, rule.severity)
        return {name: value for name, value in sent.items() if name != "alertname"}

    test = {
        "rule_files": [str(out)],
        "evaluation_interval": "10s",
        "tests": [
            {
                "interval": "10s",
                "input_series": [
                    {"series": series, "values": "1234567x12"},
                    # Counters: 25 DLQ events per window of 10 s, 100 trades started.
                    {
                        "series": 'rttm_dlq_events_total{topic="dlq",reason="bad"}',
                        "values": "0+25x12",
                    },
                    {"series": "rttm_trades_started_total", "values": "0+100x12"},
                    # A summary in seconds: RTTM's rules and texts are in milliseconds.
                    {"series": 'rttm_e2e_latency_seconds{quantile="0.99"}', "values": "6x12"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30s", "alertname": "LagHuge", "exp_alerts": []},  # still pending
                    {
                        "eval_time": "70s",
                        "alertname": "LagHuge",
                        "exp_alerts": [
                            {
                                "exp_labels": rttm_labels(lag, lag_labels),
                                "exp_annotations": expected(1234567.0, lag_labels, lag),
                            }
                        ],
                    },
                    {
                        "eval_time": "60s",
                        "alertname": "DlqShare",
                        "exp_alerts": [
                            {
                                "exp_labels": rttm_labels(dlq, {}),
                                "exp_annotations": expected(0.25, {}, dlq),
                            }
                        ],
                    },
                    {
                        "eval_time": "10s",
                        "alertname": "Slow",
                        "exp_alerts": [
                            {
                                "exp_labels": rttm_labels(slow, {"quantile": "0.99"}),
                                "exp_annotations": expected(6000.0, {"quantile": "0.99"}, slow),
                            }
                        ],
                    },
                ],
            },
            {
                "interval": "10s",
                # Trades start for a minute, then stop: RTTM writes trades_started == 0 only while
                # some started in the last 15 minutes; the counter stays after that.
                "input_series": [
                    {"series": "rttm_trades_started_total", "values": "0+10x6 60x120"}
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "3m",
                        "alertname": "NoTrades",
                        "exp_alerts": [{"exp_labels": rttm_labels(no_trades, {})}],
                    },
                    {"eval_time": "20m", "alertname": "NoTrades", "exp_alerts": []},
                ],
            },
        ],
    }
    assert expected(1234567.0, lag_labels, lag)["summary"] == (
        "pms-core lags 1.234567e+06 on trade-valid"  # Go's formatting of the value
    )
    test_file = tmp_path / "test.yml"
    test_file.write_text(json.dumps(test))  # JSON is YAML
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
