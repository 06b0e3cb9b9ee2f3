"""Durable alert delivery: the outbox rows the sink writes, and the sender that empties it.

The metrics sink adds, in the transaction that stores a firing or resolved transition, one
``rttm_alert_outbox`` row per receiver (:func:`outbox_rows`). A transition evaluated on a
window older than the horizon is stored as ``history``: replaying old data pages nobody.

A :class:`Sender` thread in each metrics-flow process delivers the due rows, oldest first,
and records each outcome. Only one sender of a database works at a time (a PostgreSQL
advisory lock), so the processes of a cluster do not send twice. A receiver that does not
answer (or answers 5xx, 408, 425, 429) is retried with capped backoff, the rows kept; one
that answers 4xx has the rows marked ``refused`` with its answer, logged once, never
retried. A repeat send after a crash is harmless: Alertmanager identifies an alert by its
labels. While the flow keeps up with the present (its newest window is within the horizon),
firing alerts are sent to every Alertmanager again each resend interval, as Prometheus
does, so Alertmanager never resolves a live alert on its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import psycopg
from psycopg.rows import dict_row

from rttm.alerts import notifications
from rttm.alerts.engine import Transition
from rttm.alerts.http_client import Answer, Outcome, call
from rttm.alerts.notifications import AlertRecord
from rttm.alerts.receivers import ALERTS_PATH, Delivery, Receiver
from rttm.alerts.rules import Rule
from rttm.db.connect import error_cause, sink_connection
from rttm.outage import OutageLog
from rttm.views.alerts import LATEST_PER_SERIES

_LOG = logging.getLogger("rttm.alerts.delivery")
#: Transition states that notify (pending and inactive stay inside RTTM, as in Prometheus).
NOTIFYING: Final = frozenset({"firing", "resolved"})
#: How often the sender looks for due rows when nothing wakes it.
POLL_S: Final = 1.0
#: First and longest wait before calling a receiver again after a failure.
RETRY_START_S: Final = 1.0
RETRY_CAP_S: Final = 30.0
#: Rows sent in one call.
BATCH: Final = 200
#: Session advisory lock of the one working sender ("rtta" in ASCII).
LOCK_ID: Final = 0x7274_7461
#: How long stopping waits for a last delivery round.
STOP_TIMEOUT_S: Final = 15.0

ENQUEUE: Final = (
    "INSERT INTO rttm_alert_outbox (receiver, rule, labels, started_at, state, status)"
    " VALUES (%s, %s, %s::jsonb, %s, %s, %s)"
    " ON CONFLICT (receiver, rule, labels, started_at, state) DO NOTHING"
)
_DUE: Final = """
SELECT o.id, o.rule, o.labels, o.started_at, o.state, a.resolved_at, a.value, a.severity,
       a.summary
FROM rttm_alert_outbox o
JOIN rttm_alerts a USING (rule, labels, started_at, state)
WHERE o.receiver = %s AND o.status = 'due'
ORDER BY o.id
LIMIT %s
"""
_FIRING: Final = f"SELECT * FROM ({LATEST_PER_SERIES}) latest WHERE state = 'firing'"  # noqa: S608
_NEWEST_WINDOW: Final = "SELECT max(window_start) AS start FROM rttm_metrics"
_STUCK_TRADE: Final = (
    "SELECT trade_id FROM rttm_stuck_trades WHERE stage = %s AND service_name = %s"
    " ORDER BY recovered_at IS NOT NULL, detected_at LIMIT 1"
)
_MARK: Final = (
    "UPDATE rttm_alert_outbox SET status = %(status)s, attempts = attempts + %(failed)s,"
    " last_error = %(error)s,"
    " delivered_at = CASE WHEN %(status)s = 'delivered' THEN now() ELSE delivered_at END"
    " WHERE id = ANY(%(ids)s)"
)
_RESENT: Final = (
    "INSERT INTO rttm_alert_outbox (receiver, rule, labels, started_at, state, status,"
    " delivered_at) VALUES (%s, %s, %s::jsonb, %s, 'firing', 'delivered', now())"
    " ON CONFLICT (receiver, rule, labels, started_at, state) DO UPDATE"
    " SET status = 'delivered', delivered_at = now(), last_error = NULL"
)


def labels_json(labels: Iterable[tuple[str, str]]) -> str:
    """Labels as the JSON object ``rttm_alerts`` and the outbox key them by."""
    return json.dumps(dict(labels), sort_keys=True)


def outbox_rows(
    transitions: Iterable[Transition], delivery: Delivery, now: datetime
) -> list[tuple[Any, ...]]:
    """Rows of :data:`ENQUEUE` for the transitions that notify, one per receiver."""
    cutoff = now - timedelta(seconds=delivery.horizon_s)
    return [
        (receiver.name, t.rule, labels_json(t.labels), t.started_at, t.state,
         "history" if t.at < cutoff else "due")
        for t in transitions
        if t.state in NOTIFYING
        for receiver in delivery.receivers
    ]  # fmt: skip


def _record(row: Mapping[str, Any], trade_id: str | None = None) -> AlertRecord:
    return AlertRecord(
        rule=row["rule"], labels=row["labels"], started_at=row["started_at"],
        state=row["state"], resolved_at=row["resolved_at"], value=row["value"],
        severity=row["severity"], summary=row["summary"], trade_id=trade_id,
    )  # fmt: skip


class _Backoff:
    """When a receiver may be called again, after how many failures in a row."""

    def __init__(self, receiver: Receiver) -> None:
        self.outage = OutageLog(
            _LOG, receiver.name,
            f"the outbox keeps its alerts; retrying with backoff up to {RETRY_CAP_S:.0f} s",
        )  # fmt: skip
        self.failures = 0
        self.next_at = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self.next_at

    def failed(self, detail: str) -> None:
        self.outage.lost(detail)
        self.failures += 1
        delay = min(RETRY_CAP_S, RETRY_START_S * 2 ** (self.failures - 1))
        self.next_at = time.monotonic() + delay

    def worked(self) -> None:
        self.outage.back()
        self.failures = 0
        self.next_at = 0.0


class Sender:
    """Delivers the outbox of ``url`` to the receivers of ``delivery``, in a thread.

    :meth:`run_once` is one round (also what tests call); :meth:`start` runs rounds every
    :data:`POLL_S` or when :meth:`wake` is called, until :meth:`stop`.
    """

    def __init__(self, url: str, delivery: Delivery, rules: Iterable[Rule]) -> None:
        self._url, self._delivery = url, delivery
        self._rules = {rule.name: rule for rule in rules}
        self._backoff = {r.name: _Backoff(r) for r in delivery.receivers}
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._leader = False
        self._next_resend = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db_outage = OutageLog(_LOG, "database (alert outbox)", "delivering when back")

    # -- the thread --------------------------------------------------------------------

    def start(self) -> None:
        """Run rounds in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="rttm-alert-sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Start a round now (the sink calls this after committing notifications)."""
        self._wake.set()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """A last round for what is due, then end the thread and close the connection."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    def _loop(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:  # a bug must not end delivery silently: log it, go on
                _LOG.exception("alert delivery round failed")
            if self._stop.is_set():
                return
            self._wake.wait(POLL_S)
            self._wake.clear()

    # -- one round ---------------------------------------------------------------------

    def run_once(self) -> bool:
        """Deliver what is due, and resend firing alerts when it is time.

        Returns whether this sender is the working one (it holds the lock and reached the
        database).
        """
        try:
            conn = self._connection()
            if not self._lead(conn):
                return False
            for receiver in self._delivery.receivers:
                backoff = self._backoff[receiver.name]
                if backoff.ready():
                    self._deliver_due(conn, receiver, backoff)
            if time.monotonic() >= self._next_resend and self._delivery.alertmanagers:
                self._resend(conn)
        except psycopg.Error as exc:
            self._db_outage.lost(error_cause(exc))
            self._close()
            return False
        self._db_outage.back()
        return True

    def _connection(self) -> psycopg.Connection[dict[str, Any]]:
        conn = self._conn
        if conn is None or conn.closed:
            self._leader = False
            raw = sink_connection(self._url, "rttm-alert-sender")
            raw.row_factory = dict_row  # type: ignore[assignment]
            conn = self._conn = cast("psycopg.Connection[dict[str, Any]]", raw)
        return conn

    def _lead(self, conn: psycopg.Connection[dict[str, Any]]) -> bool:
        if not self._leader:
            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (LOCK_ID,)).fetchone()
            self._leader = bool(row and row["locked"])
            if self._leader:
                _LOG.info("delivering alerts to %s",
                          ", ".join(r.name for r in self._delivery.receivers))  # fmt: skip
        return self._leader

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session: the advisory lock goes with it
        self._conn, self._leader = None, False

    def _deliver_due(
        self, conn: psycopg.Connection[dict[str, Any]], receiver: Receiver, backoff: _Backoff
    ) -> None:
        while True:
            rows = conn.execute(_DUE, (receiver.name, BATCH)).fetchall()
            if not rows:
                return
            latest: dict[Any, Mapping[str, Any]] = {}
            for row in rows:  # ordered by id: a later transition of an alert replaces
                latest[(row["rule"], json.dumps(row["labels"], sort_keys=True),
                        row["started_at"])] = row  # fmt: skip
            kept = {row["id"] for row in latest.values()}
            superseded = [row["id"] for row in rows if row["id"] not in kept]
            if superseded:
                self._mark(conn, superseded, "superseded", None, failed=0)
            sending = list(latest.values())
            records = [_record(row, self._stuck_trade(conn, row)) for row in sending]
            answers = self._send(receiver, records)
            for answer, group in answers:
                ids = [sending[i]["id"] for i in group]
                if answer.outcome is Outcome.SENT:
                    self._mark(conn, ids, "delivered", None, failed=0)
                elif answer.outcome is Outcome.REFUSED:
                    self._mark(conn, ids, "refused", answer.detail, failed=1)
                    _LOG.error(
                        "%s refused %d alert(s) (%s): %s; kept as refused, not retried",
                        receiver.name, len(ids),
                        ", ".join(sorted({sending[i]["rule"] for i in group})), answer.detail,
                    )  # fmt: skip
                else:
                    self._mark(conn, ids, "due", answer.detail, failed=1)
                    backoff.failed(answer.detail)
            if backoff.failures and not all(a.outcome is Outcome.SENT for a, _ in answers):
                return
            backoff.worked()
            if len(rows) < BATCH:
                return

    def _send(
        self, receiver: Receiver, records: Sequence[AlertRecord]
    ) -> list[tuple[Answer, list[int]]]:
        """Send ``records``; each answer with the indexes of the records it covers."""
        if receiver.kind == "webhook":
            return self._send_webhook(receiver, records)
        ends = notifications.firing_until(datetime.now(UTC), self._delivery.valid_for_s)
        alerts = [
            notifications.manager_alert(
                record, self._rules.get(record.rule), self._delivery.dashboard_url, ends
            )
            for record in records
        ]
        endpoint = receiver.endpoint(ALERTS_PATH)
        answer = call("POST", endpoint, alerts, receiver.headers())
        if answer.outcome is not Outcome.REFUSED or len(alerts) == 1:
            return [(answer, list(range(len(alerts))))]
        # One bad alert makes Alertmanager refuse the whole list: find it, send the rest.
        return [
            (call("POST", endpoint, [alert], receiver.headers()), [index])
            for index, alert in enumerate(alerts)
        ]

    def _send_webhook(
        self, receiver: Receiver, records: Sequence[AlertRecord]
    ) -> list[tuple[Answer, list[int]]]:
        entries = [
            notifications.webhook_alert(
                record, self._rules.get(record.rule), self._delivery.dashboard_url
            )
            for record in records
        ]
        groups: dict[str, list[int]] = {}  # one payload per alertname, as Alertmanager's
        for index, entry in enumerate(entries):
            groups.setdefault(entry["labels"]["alertname"], []).append(index)
        external = self._delivery.dashboard_url or ""
        results: list[tuple[Answer, list[int]]] = []
        for members in groups.values():
            [payload] = notifications.webhook_payloads([entries[i] for i in members], external)
            body = json.dumps(payload).encode()
            headers = receiver.headers()
            if self._delivery.webhook_secret is not None:
                headers[notifications.SIGNATURE_HEADER] = notifications.signature(
                    self._delivery.webhook_secret, body
                )
            answer = call("POST", receiver.endpoint(), headers=headers, body=body)
            results.append((answer, members))
            if answer.outcome is Outcome.FAILED:
                break  # the receiver is away: the other groups wait with it
        return results

    def _mark(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        ids: list[int],
        status: str,
        error: str | None,
        *,
        failed: int,
    ) -> None:
        conn.execute(_MARK, {"status": status, "error": error, "failed": failed, "ids": ids})

    def _stuck_trade(
        self, conn: psycopg.Connection[dict[str, Any]], row: Mapping[str, Any]
    ) -> str | None:
        """A stuck trade of a stuck-trades alert (the oldest still stuck), for the link."""
        rule = self._rules.get(row["rule"])
        if rule is None or rule.metric != "stuck_trades" or not self._delivery.dashboard_url:
            return None
        labels = row["labels"]
        found = conn.execute(
            _STUCK_TRADE, (labels.get("stage", ""), labels.get("service", ""))
        ).fetchone()
        return None if found is None else str(found["trade_id"])

    def _resend(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        """Every firing alert to every Alertmanager again, if the flow is live."""
        self._next_resend = time.monotonic() + self._delivery.resend_s
        newest = conn.execute(_NEWEST_WINDOW).fetchone()
        horizon = datetime.now(UTC) - timedelta(seconds=self._delivery.horizon_s)
        if newest is None or newest["start"] is None or newest["start"] < horizon:
            return  # catching up on old data (or nothing yet): not the present
        firing = conn.execute(_FIRING).fetchall()
        if not firing:
            return
        records = [_record(row, self._stuck_trade(conn, row)) for row in firing]
        for receiver in self._delivery.alertmanagers:
            backoff = self._backoff[receiver.name]
            if not backoff.ready():
                continue
            for start in range(0, len(records), BATCH):
                chunk = records[start : start + BATCH]
                answers = self._send(receiver, chunk)
                sent = [chunk[i] for answer, group in answers for i in group
                        if answer.outcome is Outcome.SENT]  # fmt: skip
                if sent:
                    conn.cursor().executemany(
                        _RESENT,
                        [(receiver.name, r.rule, labels_json(r.labels.items()), r.started_at)
                         for r in sent],
                    )  # fmt: skip
                failed = [a for a, _ in answers if a.outcome is Outcome.FAILED]
                if failed:
                    backoff.failed(failed[0].detail)
                    break
                backoff.worked()
