"""Bounded, paged trade traces: ``/api/trace``, ``/api/text`` and ``rttm trace`` on hot trades.

Rows go straight into a migrated database (COPY), shaped like the ingestion writes them;
the tests read them back through the API and the CLI as an operator would.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from rttm.views import trace
from rttm.web.app import create_app
from tests.dashboard_data import INSERT_DLQ, INSERT_ERROR, INSERT_LOG, T0, Event, put_events
from tests.ingest_helpers import REPO

pytestmark = pytest.mark.integration


def tied_events(count: int, per_time: int) -> list[Event]:
    """``count`` events on three partitions, ``per_time`` of them at each event time."""
    return [
        (
            "pms-core",
            "POSITION_UPDATED",
            T0 + timedelta(milliseconds=n // per_time),
            f"event {n}",
            n % 3,
            10_000 + n,
        )
        for n in range(count)
    ]


def sort_key(event: Event) -> tuple[datetime, int, int]:
    return event[2], event[4], event[5]


def pages(client: TestClient, trade_id: str, limit: int) -> list[dict[str, Any]]:
    """Every page of a trace, newest first, following ``next``."""
    answers: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        answer = client.get(f"/api/trace/{trade_id}", params=params)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
        before = answers[-1]["next"]
        if before is None:
            return answers


def rttm(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTTM_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "rttm", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("limit", [500, 333])
def test_pages_hold_every_event_once_in_order(migrated_db: str, limit: int) -> None:
    events = tied_events(1200, per_time=45)  # page ends fall inside runs of equal times
    shuffled = random.Random(7).sample(events, len(events))
    put_events(migrated_db, "T-PAGES", shuffled)
    put_events(migrated_db, "T-OTHER", [("pms-core", "TRADE_CREATED", T0, "x", 0, 1)])
    answers = pages(TestClient(create_app(migrated_db)), "T-PAGES", limit)

    assert [len(a["events"]) for a in answers] == [
        min(limit, 1200 - i * limit) for i in range(len(answers))
    ]
    assert {a["total"] for a in answers} == {1200}
    shown = [e for a in reversed(answers) for e in a["events"]]
    expected = sorted(events, key=sort_key)
    assert [e["key"] for e in shown] == [f"k:T-PAGES/{e[4]}/{e[5]}" for e in expected]
    assert [e["message"] for e in shown] == [e[3] for e in expected]
    # Each page times its first event against the event just older, across the page end.
    assert shown[0]["since_previous_ms"] is None
    firsts = [a["events"][0] for a in answers[:-1]]
    assert all(f["since_previous_ms"] is not None for f in firsts)
    ms = [(e[2] - T0) / timedelta(milliseconds=1) for e in expected]
    assert [e["since_previous_ms"] for e in shown[1:]] == [b - a for a, b in pairwise(ms)]


def test_a_hot_trade_answers_in_bounded_size_and_texts_come_whole_on_demand(
    migrated_db: str,
) -> None:
    hot = [
        (
            "pms-core",
            "POSITION_UPDATED",
            T0 + timedelta(microseconds=n),
            f"{n:05d}" + "m" * 4995,
            0,
            n,
        )
        for n in range(800)
    ]
    put_events(migrated_db, "HOT", hot)
    reason = "Schema validation failed: " + "r" * 6000
    with psycopg.connect(migrated_db, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            INSERT_DLQ,
            [
                (
                    "HOT",
                    "validation-service",
                    "trade-dlq",
                    f"{n} {reason}",
                    T0 + timedelta(seconds=n),
                    f"k:dlq/{n}",
                    n,
                )
                for n in range(150)
            ],
        )
        cur.executemany(
            INSERT_ERROR, [("HOT", "pms-core", "DB_TIMEOUT", "e" * 3000, T0, "k:err/1", 1)]
        )
        cur.executemany(
            INSERT_LOG, [("HOT", "pms-core", "WARN", "SLOW", "g" * 2500, T0, "k:log/1", 1)]
        )
    client = TestClient(create_app(migrated_db))

    answer = client.get("/api/trace/HOT")
    assert answer.status_code == 200
    bound = 1_600_000  # 500 events and 100 DLQ entries, each text cut to 2,000 characters
    assert len(answer.content) < bound < sum(len(e[3] or "") for e in hot)
    data = answer.json()
    assert (data["total"], len(data["events"])) == (800, trace.DEFAULT_LIMIT)
    assert (data["dlq_total"], len(data["dlq"])) == (150, trace.SIDE_LIMIT)
    assert data["dlq"][-1]["reason"].startswith("149 Schema")  # the newest entries
    newest = data["events"][-1]
    assert newest["message"] == hot[-1][3][: trace.TEXT_CHARS]
    assert (newest["message_truncated"], newest["message_length"]) == (True, 5000)
    assert data["errors"][0]["error_message_truncated"]
    assert (data["logs_total"], data["logs"][0]["message_length"]) == (1, 2500)

    whole = client.get("/api/text/events", params={"key": newest["key"], "time": newest["time"]})
    assert whole.status_code == 200
    assert whole.json()["text"] == hot[-1][3]
    entry = data["dlq"][0]
    whole = client.get("/api/text/dlq", params={"key": entry["key"], "time": entry["time"]})
    assert whole.json()["text"] == f"50 {reason}"
    missing = client.get("/api/text/events", params={"key": "k:none", "time": newest["time"]})
    assert missing.status_code == 404
    assert (
        client.get("/api/text/nope", params={"key": "k", "time": T0.isoformat()}).status_code == 422
    )


def test_a_bad_cursor_is_one_line_and_the_cli_pages_with_before(migrated_db: str) -> None:
    events = sorted(tied_events(12, per_time=4), key=sort_key)
    put_events(migrated_db, "T PAGE", events)
    client = TestClient(create_app(migrated_db))
    for bad in ("nope", "x" * 300, "MTIzLjQ", trace.Cursor(T0, 0, 1).encode() + "!"):
        answer = client.get("/api/trace/T PAGE", params={"before": bad})
        assert answer.status_code in {400, 422}, bad
        if answer.status_code == 400:
            assert answer.json()["detail"].startswith("malformed cursor ")
            assert "\n" not in answer.json()["detail"]
    assert client.get("/api/trace/T PAGE", params={"before": "nope"}).status_code == 400
    assert client.get("/api/trace/T PAGE", params={"limit": 0}).status_code == 422
    assert client.get("/api/trace/T PAGE", params={"limit": 5001}).status_code == 422

    first = rttm(migrated_db, "trace", "T PAGE", "--limit", "5")
    assert first.returncode == 0, first.stderr
    last = first.stdout.rstrip("\n").splitlines()[-1]
    cursor = client.get("/api/trace/T PAGE", params={"limit": 5}).json()["next"]
    assert last == (
        f"showing the newest 5 of 12 events; older: rttm trace 'T PAGE' --limit 5 --before {cursor}"
    )
    older = rttm(migrated_db, "trace", "T PAGE", "--limit", "5", "--before", cursor, "--json")
    assert older.returncode == 0, older.stderr
    page = json.loads(older.stdout)
    assert [e["message"] for e in page["events"]] == [e[3] for e in events[2:7]]
    oldest = rttm(migrated_db, "trace", "T PAGE", "--limit", "5", "--before", page["next"])
    assert f"{events[1][3]}\n" in oldest.stdout
    assert oldest.stdout.rstrip("\n").splitlines()[-1] == (
        "showing 2 older events of 12; no older events"
    )
    whole = rttm(migrated_db, "trace", "T PAGE")
    assert whole.stdout.rstrip("\n").splitlines()[-1] == "showing all 12 events"

    refused = rttm(migrated_db, "trace", "T PAGE", "--before", "nope")
    assert refused.returncode == 1
    assert refused.stderr.startswith("rttm: error: malformed cursor 'nope'")
    assert refused.stderr.count("\n") == 1


def _trade(kinds: Sequence[tuple[str, str]], filler: int) -> list[Event]:
    """Events of ``kinds`` (service, type), then ``filler`` the pipeline does not know."""
    known: list[Event] = [
        (service, kind, T0 + timedelta(seconds=n), "hop", 0, n)
        for n, (service, kind) in enumerate(kinds)
    ]
    later = [
        ("audit-service", "AUDIT_NOTE", T0 + timedelta(minutes=1, milliseconds=n), "note", 1, n)
        for n in range(filler)
    ]
    return known + later


def test_outcome_and_stage_come_from_events_outside_the_page(migrated_db: str) -> None:
    done = [
        ("simulation-service", "TRADE_CREATED"),
        ("analytics-service", "ANALYTICS_COMPUTED"),
        ("leaderboard-service", "LEADERBOARD_UPDATED"),
    ]
    put_events(migrated_db, "T-DONE", _trade(done, 600))
    put_events(migrated_db, "T-REJ", _trade([("validation-service", "VALIDATION_FAILED")], 600))
    put_events(migrated_db, "T-FLIGHT", _trade(done[:2], 600))
    client = TestClient(create_app(migrated_db))
    seen = {}
    for trade_id in ("T-DONE", "T-REJ", "T-FLIGHT"):
        data = client.get(f"/api/trace/{trade_id}", params={"limit": 50}).json()
        assert {e["event_type"] for e in data["events"]} == {"AUDIT_NOTE"}
        seen[trade_id] = (data["outcome"], data["stage"], data["service"])
    assert seen == {
        "T-DONE": ("completed", "ranked", "audit-service"),
        "T-REJ": ("rejected", "validated", "audit-service"),
        "T-FLIGHT": ("in flight", "analysed", "audit-service"),
    }
    assert client.get("/api/trace/T-NONE").status_code == 404
