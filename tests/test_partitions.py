"""Day partitions of rttm_trade_events: created ahead, never failing, dropped past retention."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from rttm.cli.main import main
from rttm.core.db import partitions
from rttm.core.db.connect import Conn
from rttm.metrics import retention

pytestmark = pytest.mark.integration

INSERT = (
    "INSERT INTO rttm_trade_events (trade_id, service_name, event_type, event_status,"
    " event_time, dedupe_key, kafka_partition, kafka_offset)"
    " VALUES (%s, 'svc', 'TRADE_CREATED', 'SUCCESS', %s, %s, 0, 0)"
)


def where(conn: Conn, dedupe_key: str) -> str:
    row = conn.execute(
        "SELECT tableoid::regclass::text FROM rttm_trade_events WHERE dedupe_key = %s",
        (dedupe_key,),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_migrate_prepares_yesterday_to_a_week_ahead(db: Conn) -> None:
    days = [p.day for p in partitions.list_partitions(db)]
    today = partitions.today()
    assert days == [today + timedelta(days=n) for n in range(-1, 8)]


def test_event_lands_in_its_day_partition_at_utc_boundaries(db: Conn) -> None:
    today = partitions.today()
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    db.execute(INSERT, ("T1", midnight, "k:a"))
    db.execute(INSERT, ("T1", midnight - timedelta(microseconds=1), "k:b"))
    assert where(db, "k:a") == f"rttm_trade_events_p{today:%Y%m%d}"
    assert where(db, "k:b") == f"rttm_trade_events_p{today - timedelta(days=1):%Y%m%d}"


def test_day_without_partition_never_fails_and_moves_when_created(db: Conn) -> None:
    far = datetime(2031, 3, 4, 12, tzinfo=UTC)
    db.execute(INSERT, ("T2", far, "k:far"))
    db.execute(INSERT, ("T2", datetime(1999, 1, 1, tzinfo=UTC), "k:old"))
    assert where(db, "k:far") == "rttm_trade_events_default"
    assert partitions.ensure_days(db, [date(2031, 3, 4)]) == [date(2031, 3, 4)]
    assert where(db, "k:far") == "rttm_trade_events_p20310304"
    assert where(db, "k:old") == "rttm_trade_events_default"
    assert partitions.ensure_days(db, [date(2031, 3, 4)]) == []
    db.execute(INSERT + " ON CONFLICT DO NOTHING", ("T2", far, "k:far"))
    assert db.execute("SELECT count(*) FROM rttm_trade_events").fetchone() == (2,)


def test_new_partition_inherits_indexes_and_unique_key(db: Conn) -> None:
    partitions.ensure_days(db, [date(2032, 1, 1)])
    indexes = {
        name
        for (name,) in db.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'rttm_trade_events_p20320101'"
        ).fetchall()
    }
    assert any("(trade_id, event_time)" in d for d in indexes), indexes
    assert any("UNIQUE" in d and "(dedupe_key, event_time)" in d for d in indexes), indexes


def test_prune_drops_only_partitions_past_retention(db: Conn) -> None:
    today = partitions.today()
    old_days = [today - timedelta(days=n) for n in (40, 31, 30)]
    partitions.ensure_days(db, old_days)
    db.execute(INSERT, ("T3", datetime.combine(old_days[0], datetime.min.time(), UTC), "k:o"))
    would = partitions.drop_older_than(db, keep_days=30, dry_run=True)
    assert [p.day for p in would] == old_days[:2]
    assert len(partitions.list_partitions(db)) == 9 + 3
    dropped = partitions.drop_older_than(db, keep_days=30)
    assert [p.day for p in dropped] == old_days[:2]
    remaining = [p.day for p in partitions.list_partitions(db)]
    assert remaining[0] == old_days[2]
    assert db.execute("SELECT count(*) FROM rttm_trade_events").fetchone() == (0,)


def test_partition_commands(
    migrated_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTTM_DATABASE_URL", migrated_db)
    assert main(["db", "partitions", "--ahead", "10"]) == 0
    out, err = capsys.readouterr()
    assert "created 3 partition(s)" in err
    assert len(out.splitlines()) == 12
    assert main(["db", "prune", "--keep-days", "0", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"would drop rttm_trade_events_p{partitions.today() - timedelta(days=1):%Y%m%d}"
    ]
    assert main(["db", "prune", "--keep-days", "0"]) == 0
    assert "dropped 1 partition(s)" in capsys.readouterr().err
    assert main(["db", "prune", "--keep-days", "-1"]) == 1
    assert "--keep-days must be between 0 and 36,500" in capsys.readouterr().err


def test_creating_partitions_while_rows_arrive_loses_nothing(migrated_db: str) -> None:
    days = [date(2040, 1, 1) + timedelta(days=n) for n in range(15)]
    stop = threading.Event()
    inserted: list[str] = []
    errors: list[BaseException] = []

    def insert_rows() -> None:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            n = 0
            while not stop.is_set() or n < 300:
                day = days[n % len(days)]
                key = f"k:c{n}"
                try:
                    conn.execute(
                        INSERT, ("T4", datetime.combine(day, datetime.min.time(), UTC), key)
                    )
                except psycopg.Error as exc:
                    errors.append(exc)
                    return
                inserted.append(key)
                n += 1

    writer = threading.Thread(target=insert_rows)
    writer.start()
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        created = partitions.ensure_days(conn, days)
    stop.set()
    writer.join(timeout=60)
    assert errors == []
    assert created == days
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE tableoid::regclass::text ="
            " 'rttm_trade_events_default') FROM rttm_trade_events WHERE trade_id = 'T4'"
        ).fetchone()
    assert rows == (len(inserted), 0)


def test_concurrent_creators_of_the_same_days_do_not_collide(migrated_db: str) -> None:
    days = [date(2041, 6, 1) + timedelta(days=n) for n in range(10)]
    created: list[list[date]] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            with psycopg.connect(migrated_db, autocommit=True) as conn:
                created.append(partitions.ensure_days(conn, days))
        except psycopg.Error as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(day for result in created for day in result) == days


def test_prune_also_drops_old_metrics_ended_alerts_their_outbox_old_stuck_and_uncounted(
    db: Conn,
) -> None:
    today = partitions.today()
    old = datetime.combine(today - timedelta(days=40), datetime.min.time(), UTC)
    new = datetime.combine(today, datetime.min.time(), UTC)
    window = (
        "INSERT INTO rttm_metrics (metric, window_start, labels, window_end, value)"
        " VALUES ('tps', %s, '{}', %s, 1)"
    )
    for start in (old, new):
        db.execute(window, (start, start + timedelta(seconds=10)))
    alert = (
        "INSERT INTO rttm_alerts (rule, labels, started_at, state, at, value, severity,"
        " summary) VALUES (%s, '{}', %s, %s, %s, 1, 'critical', '')"
    )
    db.execute(alert, ("Ended", old, "firing", old))
    db.execute(alert, ("Ended", old, "resolved", old + timedelta(minutes=5)))
    db.execute(alert, ("StillFiring", old, "firing", old))  # active: its history stays
    owed = (
        "INSERT INTO rttm_alert_outbox (receiver, rule, labels, started_at, state, status)"
        " VALUES ('webhook http://h:80', %s, '{}', %s, %s, 'delivered')"
    )
    for rule, state in (
        ("Ended", "firing"),
        ("Ended", "resolved"),
        ("StillFiring", "firing"),
        ("Orphan", "firing"),
    ):
        db.execute(owed, (rule, old, state))
    stuck = (
        "INSERT INTO rttm_stuck_trades (trade_id, last_event_time, stage, service_name,"
        " last_event_type, detected_at) VALUES (%s, %s, 's', 'x', 'T', %s)"
    )
    db.execute(stuck, ("OLD", old, old))
    db.execute(stuck, ("NEW", new, new))
    uncounted = (
        "INSERT INTO rttm_metrics_uncounted (topic, kafka_partition,"
        " kafka_offset, event_time, reason)"
        " VALUES ('rttm.trade.events', 0, %s, %s, 'late')"
    )
    for offset, moment in enumerate((old, old, new)):
        db.execute(uncounted, (offset, moment))
    db.execute(
        "INSERT INTO rttm_metrics_uncounted (topic, kafka_partition, kafka_offset,"
        " event_time, reason, noted_at) VALUES ('rttm.dlq.events', 0, 0,"
        " '2099-01-01', 'future', %s)",
        (old,),
    )
    totals = (
        "INSERT INTO rttm_metrics_totals (metric, labels, value, updated_at)"
        " VALUES (%s, '{}', 1, %s)"
    )
    db.execute(totals, ("errors", old))
    db.execute(totals, ("events", new))
    cutoff = today - timedelta(days=30)
    expected = {
        "rttm_alert_outbox": 3,
        "rttm_metrics": 1,
        "rttm_metrics_counted": 0,
        "rttm_metrics_totals": 1,
        "rttm_alerts": 2,
        "rttm_stuck_trades": 1,
        "rttm_metrics_uncounted": 3,
    }
    assert retention.prune_results(db, cutoff, dry_run=True) == expected
    assert db.execute("SELECT count(*) FROM rttm_metrics").fetchone() == (2,)
    assert retention.prune_results(db, cutoff) == expected
    assert db.execute("SELECT rule FROM rttm_alerts").fetchall() == [("StillFiring",)]
    assert db.execute("SELECT rule FROM rttm_alert_outbox").fetchall() == [("StillFiring",)]
    assert db.execute("SELECT trade_id FROM rttm_stuck_trades").fetchall() == [("NEW",)]
    assert db.execute("SELECT kafka_offset FROM rttm_metrics_uncounted").fetchall() == [(2,)]
    assert db.execute("SELECT metric FROM rttm_metrics_totals").fetchall() == [("events",)]
    assert db.execute("SELECT count(*) FROM rttm_metrics").fetchone() == (1,)
