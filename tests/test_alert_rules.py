"""Rules files: durations, the checker (every problem, on its line), defaults, tests, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rttm.alerts import rule_tests
from rttm.alerts.rules import (
    METRIC_LABELS,
    METRICS,
    Problem,
    Rule,
    check_text,
    default_rules_path,
    load_rules,
)
from rttm.cli.main import main
from rttm.core.durations import parse_duration
from rttm.core.errors import RttmError
from tests.samples import GOOD_RULES


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("1m", 60.0),
        ("1.5h", 5400.0),
        ("2d", 172_800.0),
        ("1m30s", 90.0),
        ("1h0m5s250ms", 3605.25),
        ("0s", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("-1s", "negative"),
        ("-5m", "negative"),
        ("10", "invalid duration '10'"),
        ("s", "invalid"),
        ("1x", "invalid"),
        ("1.s", "invalid"),
        (" 1s", "invalid"),
        ("1s1m", "largest to smallest"),
        ("1m1m", "largest to smallest"),
        ("1 m", "invalid"),
    ],
)
def test_bad_durations_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(text)


def test_the_shipped_defaults_load_and_pass_the_checker() -> None:
    rules = {rule.name: rule for rule in load_rules()}
    assert list(rules) == [
        "QueueLagHigh",
        "QueueLagGrowing",
        "ConsumerStalled",
        "ConsumerStopped",
        "DlqRateHigh",
        "ErrorRateHigh",
        "TradeStuck",
        "TradesStopped",
        "EndToEndLatencyHigh",
        "CardinalityExceeded",
    ]
    lag = rules["QueueLagHigh"]
    assert (lag.metric, lag.op, lag.threshold, lag.for_s, lag.severity) == (
        "queue_lag",
        ">",
        10_000.0,
        60.0,
        "warning",
    )
    assert (rules["TradeStuck"].for_s, rules["TradeStuck"].severity) == (0.0, "critical")
    assert (rules["ConsumerStalled"].threshold, rules["ConsumerStalled"].for_s) == (2.0, 30.0)
    assert rules["EndToEndLatencyHigh"].match == (("quantile", "p99"),)
    assert all(rule.summary and rule.metric in METRICS for rule in rules.values())
    assert check_text(default_rules_path().read_text()) == []


def test_metrics_and_their_labels() -> None:
    assert len(METRICS) == 31
    assert METRIC_LABELS["queue_lag"] == {"service", "topic", "partition"}
    assert METRIC_LABELS["dlq_ratio"] == frozenset()


@pytest.mark.parametrize(
    ("op", "true_for", "false_for"),
    [(">", 11, 10), (">=", 10, 9), ("<", 9, 10), ("<=", 10, 11), ("==", 10, 11), ("!=", 11, 10)],
)
def test_rule_comparisons(op: str, true_for: float, false_for: float) -> None:
    rule = Rule(name="R", metric="tps", op=op, threshold=10)
    assert rule.holds(true_for)
    assert not rule.holds(false_for)
    assert rule.holds(math.nan) is (op == "!=")


def test_rule_matchers_compare_labels_missing_ones_as_empty() -> None:
    rule = Rule(name="R", metric="queue_lag", op=">", threshold=0, match=(("topic", "a"),))
    assert rule.matches((("partition", "0"), ("topic", "a")))
    assert not rule.matches((("partition", "0"), ("topic", "b")))
    assert not rule.matches((("partition", "0"),))
    with pytest.raises(ValueError, match="op '=>'"):
        Rule(name="R", metric="tps", op="=>", threshold=0)


BAD = """\
owner = "ops"
[[rules]]
name = "LagHigh"
metric = "queue_lagg"
op = "=>"
threshold = "10k"
for = "1x"
keep_firing_for = 5
severity = "warn"
match = { topc = "trade-valid", partition = 0 }
labels = { topic = "x", "bad-name" = "y" }
treshold = 3

[[rules]]
name = "LagHigh"
metric = "tps"
summary = 7

[[rules]]
name = "9lives"
metric = "consumer_status"
op = ">"
threshold = 1
severity = "info"
match.servce = "pms-core"

[[rules]]
name = "Sub"
metric = "dlq_rate"
op = ">"
threshold = 1
severity = "info"
[rules.match]
topic = "trade-dlq"
reason = "x"
"""


def test_every_problem_is_reported_on_its_line() -> None:
    problems = check_text(BAD)
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    expected = [
        (1, "unknown top-level key 'owner'"),
        (4, "rule 'LagHigh': unknown metric 'queue_lagg' (did you mean 'queue_lag'?)"),
        (5, "op '=>' is not one of > >= < <= == !="),
        (6, "threshold must be a number, not a string"),
        (7, "for: invalid duration '1x'"),
        (8, "keep_firing_for must be a duration string such as '1m', not an integer"),
        (9, "severity 'warn' is not one of info warning critical (did you mean 'warning'?)"),
        (10, "match.partition must be a string, not an integer"),
        (11, "labels.bad-name: not a label name"),
        (12, "unknown key 'treshold' (did you mean 'threshold'?)"),
        (14, "missing required key 'op'"),
        (14, "missing required key 'threshold'"),
        (14, "missing required key 'severity'"),
        (15, "rule 'LagHigh': duplicate rule name (first at line 3)"),
        (17, "summary must be a string, not an integer"),
        (20, "rule '9lives': name '9lives' must match [A-Za-z][A-Za-z0-9_]*"),
        (25, "match.servce is not a label of consumer_status (did you mean 'service'?)"),
        (35, "rule 'Sub': match.reason is not a label of dlq_rate (its labels: topic)"),
    ]
    assert len(problems) == len(expected), "\n".join(map(str, problems))
    for problem, (line, text) in zip(problems, expected, strict=True):
        assert problem.line == line, problem
        assert text in problem.message, problem


def test_match_and_label_keys_are_checked_against_the_metric() -> None:
    text = (
        GOOD_RULES + 'match = { topic = "trade-valid", servce = "x" }\nlabels = { topic = "y" }\n'
    )
    assert check_text(text) == [
        Problem(
            7, "rule 'LagHigh': match.servce is not a label of queue_lag (did you mean 'service'?)"
        ),
        Problem(
            8, "rule 'LagHigh': labels.topic would replace the series label topic of queue_lag"
        ),
    ]


def test_toml_syntax_errors_give_tomllib_line() -> None:
    (problem,) = check_text(GOOD_RULES + 'summary = "unterminated\n')
    assert problem.line == 7
    assert problem.message.startswith("not valid TOML: ")
    (problem,) = check_text(GOOD_RULES + "name = 'again'\n")
    assert (problem.line, problem.message) == (
        7,
        "not valid TOML: cannot overwrite a value (column 15)",
    )


def test_a_file_without_rules_and_inline_arrays() -> None:
    assert check_text("") == [Problem(1, "no rules: add [[rules]] tables")]
    assert check_text("# nothing\nrules = []\n") == [Problem(2, "no rules: add [[rules]] tables")]
    assert check_text("rules = 5\n") == [Problem(1, "rules must be [[rules]] tables")]
    assert check_text("# typo\n[[rule]]\nname = 'A'\n") == [
        Problem(1, "no rules: add [[rules]] tables"),
        Problem(
            2,
            "unknown top-level key 'rule': a rules file holds [[rules]] tables only "
            "(did you mean 'rules'?)",
        ),
    ]
    inline = '# rules inline\nrules = [\n  { name = "A", metric = "tps", op = ">" },\n]\n'
    assert [(p.line, p.message) for p in check_text(inline)] == [
        (2, "rule 'A': missing required key 'threshold'"),
        (2, "rule 'A': missing required key 'severity'"),
    ]
    assert [(p.line, p.message) for p in check_text("[[rules]]\n[[rules]]\nname = 'B'\n")] == [
        (1, "rules[0]: missing required key 'name'"),
        (1, "rules[0]: missing required key 'metric'"),
        (1, "rules[0]: missing required key 'op'"),
        (1, "rules[0]: missing required key 'threshold'"),
        (1, "rules[0]: missing required key 'severity'"),
        (2, "rule 'B': missing required key 'metric'"),
        (2, "rule 'B': missing required key 'op'"),
        (2, "rule 'B': missing required key 'threshold'"),
        (2, "rule 'B': missing required key 'severity'"),
    ]


def test_load_rules_lists_every_problem_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD_RULES.replace('op = ">"', 'op = "=>"').replace("10", "'x'"))
    with pytest.raises(RttmError) as caught:
        load_rules(path)
    assert str(caught.value).splitlines() == [
        f"2 problems in {path}:",
        f"{path}:4: rule 'LagHigh': op '=>' is not one of > >= < <= == != (did you mean '>'?)",
        f"{path}:5: rule 'LagHigh': threshold must be a number, not a string",
    ]
    with pytest.raises(RttmError, match=r"cannot read rules .*missing\.toml: No such file"):
        load_rules(tmp_path / "missing.toml")
    path.write_text(GOOD_RULES + 'for = "90s"\nkeep_firing_for = "1m"\nlabels = { team = "ops" }\n')
    (rule,) = load_rules(path)
    assert rule == Rule(
        name="LagHigh",
        metric="queue_lag",
        op=">",
        threshold=10.0,
        for_s=90.0,
        keep_firing_for_s=60.0,
        severity="warning",
        labels=(("team", "ops"),),
    )


def test_parse_values() -> None:
    # promtool's notation: VxN and a+bxN are N+1 values, _xN is N absent windows.
    assert rule_tests.parse_values("1 _ 2x3 _x2 1+2x3 5-1x2 -1e3 Inf 0x0") == [
        1.0,
        None,
        2.0,
        2.0,
        2.0,
        2.0,
        None,
        None,
        1.0,
        3.0,
        5.0,
        7.0,
        5.0,
        4.0,
        3.0,
        -1000.0,
        math.inf,
        0.0,
    ]
    with pytest.raises(ValueError, match="invalid value '1y'"):
        rule_tests.parse_values("1 1y")
    with pytest.raises(ValueError, match="more than"):
        rule_tests.parse_values("0x100000000")


def test_the_shipped_rule_tests_pass() -> None:
    assert rule_tests.run_tests(rule_tests.default_tests_path()) == []


RULES_WITH_EXTRA_LABELS = GOOD_RULES + 'for = "20s"\nlabels = { team = "ops" }\n'
LAG = '{ service = "s", topic = "t", partition = "0" }'
TESTS = f"""\
rules = "rules.toml"
window = "10s"

[[series]]
metric = "queue_lag"
labels = {LAG}
values = "5 500x2 _"

[[expect]]
at = "20s"
pending = [{{ rule = "LagHigh", labels = {LAG} }}]

[[expect]]
at = "40s"
firing = [{{ rule = "LagHigh", labels = {LAG[:-1]}, team = "ops" }} }}]

[[expect]]
at = "50s"
"""


def write_tests(tmp_path: Path, tests: str = TESTS) -> Path:
    (tmp_path / "rules.toml").write_text(RULES_WITH_EXTRA_LABELS)
    path = tmp_path / "rules_test.toml"
    path.write_text(tests)
    return path


def test_rule_tests_of_a_file_beside_them_pass(tmp_path: Path) -> None:
    assert rule_tests.run_tests(write_tests(tmp_path)) == []


def test_a_wrong_expectation_is_a_failure_naming_what_and_where(tmp_path: Path) -> None:
    path = write_tests(tmp_path, TESTS.replace('at = "40s"', 'at = "30s"'))
    assert rule_tests.run_tests(path) == [
        f'{path}: expect[1] at 30s: firing: expected [LagHigh{{partition="0",service="s",'
        'topic="t"}], got nothing'
    ]
    path = write_tests(tmp_path, TESTS.replace('at = "20s"\npending', 'at = "20s"\nfiring'))
    failures = rule_tests.run_tests(path)
    assert len(failures) == 1
    assert failures[0].startswith(f"{path}: expect[0] at 20s: firing: expected [LagHigh{{")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (('at = "50s"', 'at = "45s"'), "expect[2].at '45s' is not a window end"),
        (('at = "50s"', 'at = "0s"'), "expect[2].at '0s' is not a window end"),
        (('rule = "LagHigh"', 'rule = "LagLow"'), "expect[0]: no rule 'LagLow'"),
        (('metric = "queue_lag"', 'metric = "queue_lagg"'), "did you mean 'queue_lag'"),
        (('values = "5 ', 'values = "5O '), "series[0].values: invalid value '5O'"),
        (('window = "10s"', 'window = "0s"'), "window must be longer than 0s"),
        (('window = "10s"', 'windw = "10s"'), "unknown field `windw`"),
        (('rules = "rules.toml"', 'rules = "nope.toml"'), "cannot read rules"),
    ],
)
def test_malformed_rule_tests_are_errors(
    tmp_path: Path, change: tuple[str, str], error: str
) -> None:
    with pytest.raises(RttmError, match=error.replace("[", r"\[").replace("(", r"\(")):
        rule_tests.run_tests(write_tests(tmp_path, TESTS.replace(*change)))


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check"]) == 0
    assert capsys.readouterr().out == "the shipped default rules: 10 rules OK\n"
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD_RULES)
    bad.write_text(GOOD_RULES.replace("queue_lag", "queue_lagg") + "colour = 1\n")
    assert main(["rules", "check", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: 1 rule OK\n"
    assert main(["rules", "check", str(good), str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{good}: 1 rule OK",
        f"{bad}:3: rule 'LagHigh': unknown metric 'queue_lagg' (did you mean 'queue_lag'?)",
        f"{bad}:7: rule 'LagHigh': unknown key 'colour'",
    ]
    assert main(["rules", "check", str(tmp_path / "none.toml")]) == 1
    assert "rttm: error: cannot read rules" in capsys.readouterr().err


def test_cli_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test"]) == 0
    assert capsys.readouterr().out == f"{rule_tests.default_tests_path()}: PASS\n"
    passing = write_tests(tmp_path)
    failing = tmp_path / "failing_test.toml"
    failing.write_text(TESTS.replace('at = "40s"', 'at = "30s"'))
    assert main(["rules", "test", str(passing), str(failing)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{passing}: PASS"
    assert out[1].startswith(f"{failing}: expect[1] at 30s: firing: expected")
    assert out[2] == f"{failing}: FAIL (1 failed)"
