"""Alert text templates, the new rule keys, and the delivery settings' one-line errors."""

from __future__ import annotations

import pytest

from rttm.alerts import templates
from rttm.alerts.receivers import Delivery, from_env
from rttm.alerts.rules import Problem, check_text
from rttm.core.config import ConfigError
from tests.samples import GOOD_RULES


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.25, "0.25"),
        (12000.0, "12000"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-3.5, "-3.5"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1_200_000.0, "1.2e+06"),
        (0.1 + 0.2, "0.30000000000000004"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (1e21, "1e+21"),
    ],
)
def test_values_print_as_go_prints_a_float64(value: float, text: str) -> None:
    assert templates.format_value(value) == text


def test_labels_and_the_value_fill_in_and_a_missing_label_is_empty() -> None:
    text = "{{ $labels.service }} lags {{$value}} on {{  $labels.topic  }}{{ $labels.nope }}."
    assert templates.render(text, 12.5, {"service": "pms", "topic": "t"}) == "pms lags 12.5 on t."
    assert templates.problems(text) == []
    assert templates.render("{{ .Value }} {{$value}}", 2, {}) == "{{ .Value }} 2"  # unchecked


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{{ .Value }}", "unsupported template '{{ .Value }}'"),
        ("{{ $value | humanize }}", "unsupported template '{{ $value | humanize }}'"),
        ("{{ $labels.bad-name }}", "unsupported template"),
        ("open {{ $value", "unbalanced '{{' or '}}'"),
        ("close }}", "unbalanced '{{' or '}}'"),
    ],
)
def test_other_actions_are_problems(text: str, problem: str) -> None:
    [found] = templates.problems(text)
    assert problem in found


def test_rule_labels_may_not_set_what_rttm_sets() -> None:
    text = GOOD_RULES + 'labels = { severity = "page", team = "pms", source = "x" }\n'
    assert check_text(text) == [
        Problem(7, "rule 'LagHigh': labels.severity: set it with the rule's severity key"),
        Problem(
            7,
            "rule 'LagHigh': labels.source: RTTM marks its alerts source=\"rttm\" for"
            " routes and silences",
        ),
    ]


def test_rules_check_templates_and_runbook_links_on_their_lines() -> None:
    text = (
        GOOD_RULES + 'summary = "lag {{ .Value }}"\ndescription = "ok {{ $value }}"\n'
        'runbook_url = "ftp://runbooks/lag"\n'
    )
    assert check_text(text) == [
        Problem(
            7,
            "rule 'LagHigh': summary: unsupported template '{{ .Value }}':"
            " use {{ $value }} or {{ $labels.NAME }}",
        ),
        Problem(
            9,
            "rule 'LagHigh': runbook_url 'ftp://runbooks/lag' must be an http:// or https:// link",
        ),
    ]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"RTTM_ALERTMANAGER_URL": "am:9093"},
            "RTTM_ALERTMANAGER_URL: 'am:9093' is not a URL: write it as http://HOST:PORT",
        ),
        (
            {"RTTM_ALERTMANAGER_URL": "ops:pw@am:9093"},
            "RTTM_ALERTMANAGER_URL: (not shown: it holds an @) is not a URL",
        ),
        (
            {"RTTM_ALERTMANAGER_URL": "ftp://user:pw@am"},
            "RTTM_ALERTMANAGER_URL: scheme 'ftp' is not supported: use http:// or https://",
        ),
        (
            {"RTTM_ALERTMANAGER_URL": "http://am:99999"},
            "RTTM_ALERTMANAGER_URL: the port of http://am is not a number from 0 to 65535",
        ),
        (
            {"RTTM_ALERTMANAGER_URL": "http://ops:p/w@am:9093"},  # "/" in a password: still hidden
            "RTTM_ALERTMANAGER_URL: the port is not a number from 0 to 65535",
        ),
        (
            {"RTTM_ALERTMANAGER_URL": "http://a:1, http://a:1/"},
            "RTTM_ALERTMANAGER_URL: the same Alertmanager is listed twice",
        ),
        (
            {"RTTM_ALERTMANAGER_URL": "http://a:1, a:2"},
            "RTTM_ALERTMANAGER_URL entry 2: 'a:2' is not a URL",
        ),
        (
            {"RTTM_ALERT_WEBHOOK_URL": "https:///hook"},
            "RTTM_ALERT_WEBHOOK_URL: no host in the URL: write it as https://HOST:PORT",
        ),
        (
            {"RTTM_ALERT_WEBHOOK_SECRET": "x"},
            "RTTM_ALERT_WEBHOOK_SECRET is set but RTTM_ALERT_WEBHOOK_URL is not: set both or"
            " neither",
        ),
        ({"RTTM_DASHBOARD_URL": "rttm.example"}, "RTTM_DASHBOARD_URL: 'rttm.example' is not a URL"),
        (
            {"RTTM_DASHBOARD_URL": "https://ops:pw@rttm.example"},
            "RTTM_DASHBOARD_URL: write it without user:password@",
        ),
        ({"RTTM_ALERT_HORIZON": "5"}, "RTTM_ALERT_HORIZON: invalid duration '5'"),
        ({"RTTM_ALERT_RESEND": "0s"}, "RTTM_ALERT_RESEND: must be longer than 0s, got '0s'"),
    ],
)
def test_delivery_settings_fail_in_one_line_without_credentials(
    env: dict[str, str], error: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env(env)
    assert str(caught.value).startswith(error)
    assert "\n" not in str(caught.value)
    assert "pw" not in str(caught.value)


def test_delivery_settings_name_receivers_without_credentials_or_tokens() -> None:
    env = {
        "RTTM_ALERTMANAGER_URL": "http://ops:pw@am-1:9093/prefix/, https://am-2, http://am-3",
        "RTTM_ALERT_WEBHOOK_URL": "https://chat.example/hooks/T0KEN?room=ops",
        "RTTM_ALERT_WEBHOOK_SECRET": "s3",
        "RTTM_DASHBOARD_URL": "https://rttm.example/",
    }
    delivery = from_env(env)
    assert [r.name for r in delivery.receivers] == [
        "alertmanager http://am-1:9093/…",
        "alertmanager https://am-2:443",
        "alertmanager http://am-3:80",
        "webhook https://chat.example:443/…",
    ]
    first, second, _ = delivery.alertmanagers
    assert first.endpoint("/api/v2/alerts") == "http://am-1:9093/prefix/api/v2/alerts"
    assert second.endpoint("/api/v2/alerts") == "https://am-2/api/v2/alerts"
    assert delivery.receivers[3].endpoint() == "https://chat.example/hooks/T0KEN?room=ops"
    assert (delivery.webhook_secret, delivery.dashboard_url) == (b"s3", "https://rttm.example/")
    assert from_env({}) == Delivery()  # nothing configured: nothing sent
    assert first.headers() == {"Authorization": "Basic b3BzOnB3"}
    assert second.headers() == {}
    assert "pw" not in repr(delivery)
    assert "T0KEN" not in repr(delivery)
    assert (delivery.horizon_s, delivery.resend_s, delivery.valid_for_s) == (300, 60, 240)
