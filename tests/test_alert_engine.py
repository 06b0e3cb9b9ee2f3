"""The alert engine: Prometheus' pending → firing → resolved, per series, order-independent."""

from __future__ import annotations

import json
import math
import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from rttm.alerts.engine import Alert, AlertEngine, Transition
from rttm.alerts.rules import Rule
from rttm.metrics.points import Labels, Point, labels_of

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=10)
P0 = labels_of({"service": "pms-core", "topic": "trade-valid", "partition": "0"})
P1 = labels_of({"service": "pms-core", "topic": "trade-valid", "partition": "1"})


def lag_rule(**changes: object) -> Rule:
    fields: dict[str, object] = {
        "name": "QueueLagHigh",
        "metric": "queue_lag",
        "op": ">",
        "threshold": 100.0,
        "for_s": 30.0,
        "severity": "warning",
        "summary": "lag",
    }
    fields.update(changes)
    return Rule(**fields)  # type: ignore[arg-type]


def end(i: int) -> datetime:
    """The end of window i: its evaluation time."""
    return T0 + (i + 1) * WINDOW


def point(i: int, value: float, labels: Labels = P0, metric: str = "queue_lag") -> Point:
    return Point(metric, labels, T0 + i * WINDOW, end(i), value)


def states(engine: AlertEngine, i: int, *values: float | None) -> list[str]:
    """Evaluate window i with series P0 at ``values[0]`` (None: absent); the new states."""
    points = [point(i, value) for value in values if value is not None]
    return [t.state for t in engine.evaluate(points, end(i))]


def run(engine: AlertEngine, values: list[float | None], first: int = 0) -> list[list[str]]:
    """Evaluate windows ``first``, ``first + 1``, ... with series P0 at ``values``."""
    return [states(engine, i, value) for i, value in enumerate(values, first)]


def test_pending_then_firing_once_the_condition_has_held_for_the_for_duration() -> None:
    engine = AlertEngine([lag_rule()])
    first = engine.evaluate([point(0, 500)], end(0))
    assert [(t.state, t.started_at, t.value) for t in first] == [("pending", end(0), 500.0)]
    # Window 3 is evaluated 30 s after window 0: the first evaluation with for = 30s reached.
    assert run(engine, [600, 700, 800, 900], first=1) == [[], [], ["firing"], []]
    engine = AlertEngine([lag_rule()])
    transitions = [engine.evaluate([point(i, 500 + i)], end(i)) for i in range(5)]
    assert [[t.state for t in ts] for ts in transitions] == [["pending"], [], [], ["firing"], []]
    fired = transitions[3][0]
    assert (fired.started_at, fired.at, fired.value, fired.resolved_at) == (
        end(0),
        end(3),
        503.0,
        None,
    )


def test_a_pending_alert_cleared_early_goes_inactive_and_starts_over() -> None:
    engine = AlertEngine([lag_rule()])
    assert run(engine, [500, 500, 50]) == [["pending"], [], ["inactive"]]
    assert engine.active() == ()
    restarted = engine.evaluate([point(3, 900)], end(3))
    assert [(t.state, t.started_at) for t in restarted] == [("pending", end(3))]


def test_for_zero_fires_at_the_first_evaluation_with_one_transition() -> None:
    engine = AlertEngine([lag_rule(for_s=0.0)])
    (fired,) = engine.evaluate([point(0, 500)], end(0))
    assert (fired.state, fired.started_at, fired.at) == ("firing", end(0), end(0))
    assert run(engine, [500, 500], first=1) == [[], []]


def test_a_firing_alert_that_stays_firing_produces_nothing_and_resolves_when_cleared() -> None:
    engine = AlertEngine([lag_rule(for_s=0.0)])
    assert run(engine, [500, 600, 700, 80]) == [["firing"], [], [], ["resolved"]]
    engine = AlertEngine([lag_rule(for_s=0.0)])
    run(engine, [500, 600])
    (resolved,) = engine.evaluate([point(2, 80)], end(2))
    assert (resolved.started_at, resolved.resolved_at, resolved.value) == (end(0), end(2), 80.0)
    assert engine.active() == ()


def test_keep_firing_for_holds_the_alert_then_resolves() -> None:
    engine = AlertEngine([lag_rule(for_s=0.0, keep_firing_for_s=20.0)])
    # False from window 1: still firing at 1 (0 s) and 2 (10 s), resolved at 3 (20 s).
    assert run(engine, [500, 50, 50, 50, 50]) == [["firing"], [], [], ["resolved"], []]


def test_keep_firing_for_countdown_restarts_when_the_condition_holds_again() -> None:
    engine = AlertEngine([lag_rule(for_s=0.0, keep_firing_for_s=20.0)])
    got = run(engine, [500, 50, 500, 50, 50, 50])
    # Held again at window 2, so the countdown starts over at 3 and ends at 5, not at 3.
    assert got == [["firing"], [], [], [], [], ["resolved"]]
    assert engine.active() == ()


def test_keep_firing_for_keeps_a_firing_alert_only_not_a_pending_one() -> None:
    engine = AlertEngine([lag_rule(keep_firing_for_s=60.0)])  # for = 30 s
    # Pending at 0, cleared at 1: inactive at once (keep_firing_for is for firing alerts),
    # so the pending that starts again at 2 fires 30 s later, at 5, not at 3.
    got = run(engine, [500, 50, 500, 500, 500, 500])
    assert got == [["pending"], ["inactive"], ["pending"], [], [], ["firing"]]


def test_of_two_points_of_one_series_the_latest_window_counts_then_a_number_over_nan() -> None:
    engine = AlertEngine([lag_rule(for_s=0.0)])
    # A late point of window 0 arrives with window 1's: window 1 decides (50: no alert).
    assert engine.evaluate([point(1, 50), point(0, 500)], end(1)) == []
    assert engine.evaluate([point(0, 500), point(1, 50)], end(1)) == []
    (fired,) = engine.evaluate([point(2, math.nan), point(2, 700)], end(2))
    assert (fired.state, fired.value) == ("firing", 700.0)
    assert engine.evaluate([point(3, 900), point(3, math.nan)], end(3)) == []  # still firing


def test_an_absent_series_counts_as_false_and_keeps_its_last_value() -> None:
    engine = AlertEngine([lag_rule()])
    engine.evaluate([point(0, 500)], end(0))
    (inactive,) = engine.evaluate([], end(1))
    assert (inactive.state, inactive.value) == ("inactive", 500.0)
    engine = AlertEngine([lag_rule(for_s=0.0)])
    engine.evaluate([point(0, 700)], end(0))
    (resolved,) = engine.evaluate([point(1, 999, P1, "tps")], end(1))
    assert (resolved.state, resolved.value, resolved.resolved_at) == ("resolved", 700.0, end(1))


def test_label_matchers_select_the_series() -> None:
    other_topic = labels_of({"service": "x", "topic": "trade-raw", "partition": "0"})
    engine = AlertEngine([lag_rule(for_s=0.0, match=(("topic", "trade-valid"),))])
    transitions = engine.evaluate([point(0, 500, P0), point(0, 500, other_topic)], end(0))
    assert [t.labels for t in transitions] == [P0]
    # A matcher on a missing label compares with "" (as in Prometheus).
    absent = AlertEngine([lag_rule(for_s=0.0, match=(("region", ""),))])
    assert [t.state for t in absent.evaluate([point(0, 500)], end(0))] == ["firing"]
    present = AlertEngine([lag_rule(for_s=0.0, match=(("region", "eu"),))])
    assert present.evaluate([point(0, 500)], end(0)) == []


def test_two_series_of_one_rule_are_independent_alerts() -> None:
    engine = AlertEngine([lag_rule(for_s=10.0)])
    first = engine.evaluate([point(0, 500, P0)], end(0))
    assert [(t.labels, t.state) for t in first] == [(P0, "pending")]
    second = engine.evaluate([point(1, 500, P0), point(1, 500, P1)], end(1))
    assert [(t.labels, t.state) for t in second] == [(P0, "firing"), (P1, "pending")]
    third = engine.evaluate([point(2, 500, P0), point(2, 5, P1)], end(2))
    assert [(t.labels, t.state) for t in third] == [(P1, "inactive")]
    assert [(a.series, a.state, a.started_at) for a in engine.active()] == [(P0, "firing", end(0))]


def test_transitions_carry_the_rule_labels_severity_and_summary() -> None:
    rule = lag_rule(for_s=0.0, labels=(("team", "ops"),), severity="critical", summary="s")
    (fired,) = AlertEngine([rule]).evaluate([point(0, 500)], end(0))
    assert fired.labels == tuple(sorted((*P0, ("team", "ops"))))
    assert (fired.rule, fired.severity, fired.summary) == ("QueueLagHigh", "critical", "s")


def test_transition_key_and_json() -> None:
    rule = lag_rule(for_s=0.0, labels=(("team", "ops"),))
    engine = AlertEngine([rule])
    (fired,) = engine.evaluate([point(0, 500)], end(0))
    (resolved,) = engine.evaluate([point(1, 5)], end(1))
    assert fired.key() == (
        'QueueLagHigh|{partition="0",service="pms-core",team="ops",topic="trade-valid"}'
        "|2026-01-05T09:00:10Z|firing"
    )
    assert resolved.key() == fired.key().replace("|firing", "|resolved")
    # The same transition computed again (a replay after a restart) has the same key.
    (again,) = AlertEngine([rule]).evaluate([point(0, 500)], end(0))
    assert again.key() == fired.key()
    assert json.loads(resolved.as_json()) == {
        "rule": "QueueLagHigh",
        "labels": {"partition": "0", "service": "pms-core", "team": "ops", "topic": "trade-valid"},
        "state": "resolved",
        "value": 5.0,
        "started_at": "2026-01-05T09:00:10Z",
        "resolved_at": "2026-01-05T09:00:20Z",
        "at": "2026-01-05T09:00:20Z",
        "severity": "warning",
        "summary": "lag",
    }


def _series(n: int) -> list[Labels]:
    return [labels_of({"service": "s", "topic": "t", "partition": str(p)}) for p in range(n)]


def _trace(rules: list[Rule], windows: list[list[Point]]) -> list[list[Transition]]:
    engine = AlertEngine(rules)
    return [engine.evaluate(points, end(i)) for i, points in enumerate(windows)]


def test_evaluation_does_not_depend_on_the_order_of_points_or_rules() -> None:
    rng = random.Random(5)
    rules = [
        lag_rule(for_s=20.0),
        lag_rule(name="LagLow", op="<", threshold=50.0, for_s=0.0, keep_firing_for_s=10.0),
        lag_rule(name="ManyEvents", metric="events", match=(), threshold=3.0, for_s=0.0),
    ]
    windows: list[list[Point]] = []
    for i in range(30):
        points = [point(i, rng.choice([10, 80, 500]), labels) for labels in _series(8)]
        points += [point(i, rng.choice([1, 9]), (("event_type", "X"),), "events")]
        # A duplicate of one series: the latest window and then the larger value win.
        points += [Point("queue_lag", P0, T0, end(i), 1_000), Point("queue_lag", P0, T0, end(i), 7)]
        windows.append([p for p in points if rng.random() > 0.1])
    expected = _trace(rules, windows)
    assert sum(len(ts) for ts in expected) > 30  # the trace exercises every transition
    assert {t.state for ts in expected for t in ts} == {"pending", "firing", "resolved", "inactive"}
    for _ in range(5):
        shuffled = [rng.sample(points, len(points)) for points in windows]
        assert _trace(rng.sample(rules, len(rules)), shuffled) == expected


def test_snapshot_restored_after_pickling_continues_the_same() -> None:
    rng = random.Random(9)
    rules = [lag_rule(for_s=20.0, keep_firing_for_s=20.0), lag_rule(name="B", op="<", threshold=50)]
    windows = [
        [point(i, rng.choice([10, 200, 900]), labels) for labels in _series(6)] for i in range(40)
    ]
    whole = _trace(rules, windows)
    engine = AlertEngine(rules)
    for i, points in enumerate(windows[:17]):
        engine.evaluate(points, end(i))
    snapshot = engine.snapshot()
    assert isinstance(snapshot, tuple)
    assert all(isinstance(alert, Alert) for alert in snapshot)
    assert {alert.state for alert in snapshot} == {"pending", "firing"}
    restored = AlertEngine(rules, pickle.loads(pickle.dumps(snapshot)))  # noqa: S301
    assert restored.snapshot() == snapshot == engine.active()
    rest = [restored.evaluate(points, end(i)) for i, points in enumerate(windows) if i >= 17]
    assert rest == whole[17:]
    # The snapshot is a copy: the engine moving on leaves it as it was.
    assert engine.snapshot() == snapshot
    engine.evaluate([], end(17))
    assert engine.snapshot() != snapshot


def test_a_restored_state_drops_alerts_of_rules_that_no_longer_exist() -> None:
    gone = Alert("Gone", P0, "firing", 1.0, end(0))
    kept = Alert("QueueLagHigh", P0, "pending", 500.0, end(0))
    engine = AlertEngine([lag_rule()], [gone, kept])
    assert engine.active() == (kept,)
    assert [t.state for t in engine.evaluate([point(3, 500)], end(3))] == ["firing"]


def test_nan_values_do_not_meet_a_threshold() -> None:
    engine = AlertEngine([lag_rule(for_s=0.0)])
    assert engine.evaluate([point(0, math.nan)], end(0)) == []


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        AlertEngine([lag_rule(), lag_rule()])
    with pytest.raises(ValueError, match="no time zone"):
        AlertEngine([lag_rule()]).evaluate([], datetime(2026, 1, 1))  # noqa: DTZ001
