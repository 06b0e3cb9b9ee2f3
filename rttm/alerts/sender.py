"""The sender: delivers the alert outbox to Alertmanager and the webhook, and resends.

A :class:`Sender` thread runs in each metrics-flow process; only one per database works at
a time (a PostgreSQL session advisory lock), so the processes of a cluster do not send
twice, and another takes over when its process dies. Each round it delivers every
receiver's due rows, oldest first, and records the outcome (:mod:`rttm.alerts.outbox`):

* sent: ``delivered``;
* no answer, 5xx, 408, 425, 429: the rows stay ``due`` with the attempt counted and the
  error kept; the receiver is not called again for a backoff of 1 s doubling to 30 s, and
  the outage is logged once each way;
* a 4xx: ``refused`` with the receiver's answer, logged once, never retried. Alertmanager
  refuses a whole list for one bad alert, so a refused list is sent again one alert at a
  time to find it.

A repeat send after a crash is harmless: Alertmanager identifies an alert by its labels.
While the flow keeps up with the present (its newest window is within the horizon), every
firing alert of a rule it still has is sent to each Alertmanager again every resend
interval, as Prometheus does, so Alertmanager never resolves a live alert on its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import psycopg
from psycopg.rows import dict_row

from rttm.alerts import notifications, outbox
from rttm.alerts.http_client import Answer, Outcome, call
from rttm.alerts.notifications import AlertRecord
from rttm.alerts.receivers import ALERTS_PATH, Delivery, Receiver
from rttm.alerts.rules import Rule
from rttm.alerts.stored import LATEST_PER_SERIES
from rttm.core.db.connect import DictConn, error_cause, sink_connection
from rttm.core.outage import OutageLog

_LOG = logging.getLogger(__name__)
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

_DUE: Final = """
SELECT o.id, o.rule, o.labels, o.started_at, o.state, a.resolved_at, a.value, a.severity,
       a.summary,
       (SELECT f.at FROM rttm_alerts f
        WHERE f.rule = o.rule AND f.labels = o.labels AND f.started_at = o.started_at
          AND f.state = 'firing') AS fired_at
FROM rttm_alert_outbox o
JOIN rttm_alerts a USING (rule, labels, started_at, state)
WHERE o.receiver = %(receiver)s AND o.status = %(due)s
ORDER BY o.id
LIMIT %(limit)s
"""
_FIRING: Final = (
    f"SELECT *, at AS fired_at FROM ({LATEST_PER_SERIES}) latest WHERE state = 'firing'"  # noqa: S608
)
_REFUSED_FIRING: Final = (
    "SELECT rule, labels, started_at FROM rttm_alert_outbox"
    " WHERE receiver = %s AND state = 'firing' AND status = %s"
)
_NEWEST_WINDOW: Final = "SELECT max(window_start) AS start FROM rttm_metrics"
_STUCK_TRADE: Final = (
    "SELECT trade_id FROM rttm_stuck_trades"
    " WHERE recovered_at IS NULL AND stage = %s AND service_name = %s"
    " ORDER BY detected_at LIMIT 1"
)
_MARK: Final = (
    "UPDATE rttm_alert_outbox SET status = %(status)s, attempts = attempts + %(failed)s,"
    " last_error = %(error)s,"
    " delivered_at = CASE WHEN %(status)s = %(delivered)s THEN now()"
    " ELSE delivered_at END"
    " WHERE id = ANY(%(ids)s)"
)
_DROP_UNKNOWN: Final = (
    "UPDATE rttm_alert_outbox SET status = %(dropped)s,"
    " last_error = 'its receiver is no longer configured'"
    " WHERE status = %(due)s AND receiver <> ALL(%(receivers)s)"
)
_RESENT: Final = (
    "INSERT INTO rttm_alert_outbox (receiver, rule, labels, started_at, state, status,"
    " delivered_at) VALUES (%s, %s, %s::jsonb, %s, 'firing', %s, now())"
    " ON CONFLICT (receiver, rule, labels, started_at, state) DO UPDATE"
    " SET status = excluded.status, delivered_at = now(), last_error = NULL"
)


def _record(row: Mapping[str, Any], trade_id: str | None = None) -> AlertRecord:
    return AlertRecord(
        rule=row["rule"],
        labels=row["labels"],
        started_at=row["started_at"],
        state=row["state"],
        resolved_at=row["resolved_at"],
        value=row["value"],
        severity=row["severity"],
        summary=row["summary"],
        fired_at=row["fired_at"],
        trade_id=trade_id,
    )


class _Backoff:
    """When a receiver may be called again, after how many failed rounds in a row."""

    def __init__(self, receiver: Receiver) -> None:
        self.outage = OutageLog(
            _LOG,
            receiver.name,
            f"the outbox keeps its alerts; retrying with backoff up to {RETRY_CAP_S:.0f} s",
        )
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


def _failure(answers: Iterable[tuple[Answer, list[int]]]) -> Answer | None:
    return next((answer for answer, _ in answers if answer.outcome is Outcome.FAILED), None)


class Sender:
    """Delivers the outbox of ``url`` to the receivers of ``delivery``, in a thread.

    :meth:`run_once` is one round (also what tests call); :meth:`start` runs rounds every
    :data:`POLL_S` or when :meth:`wake` is called, until :meth:`stop`.
    """

    def __init__(self, url: str, delivery: Delivery, rules: Iterable[Rule]) -> None:
        self._url, self._delivery = url, delivery
        self._rules = {rule.name: rule for rule in rules}
        self._backoff = {r.name: _Backoff(r) for r in delivery.receivers}
        self._conn: DictConn | None = None
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
            if self._thread.is_alive():
                _LOG.warning("alert delivery still busy after %.0f s; stopping anyway", timeout)
                return  # the daemon thread ends with the process; its connection with it
        self._hand_over()  # without a thread (run_once alone): the caller's last round
        self._close()

    def _loop(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:  # a bug must not end delivery silently: log it, go on
                _LOG.exception("alert delivery round failed")
            if self._stop.is_set():
                self._hand_over()
                self._close()
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

    def _connection(self) -> DictConn:
        conn = self._conn
        if conn is None or conn.closed:
            self._leader = False
            raw = sink_connection(self._url, "rttm-alert-sender")
            raw.row_factory = dict_row  # type: ignore[assignment]
            conn = self._conn = cast("DictConn", raw)
        return conn

    def _lead(self, conn: DictConn) -> bool:
        if not self._leader:
            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (LOCK_ID,)).fetchone()
            self._leader = bool(row and row["locked"])
            if self._leader:
                names = [r.name for r in self._delivery.receivers]
                dropped = conn.execute(
                    _DROP_UNKNOWN,
                    {"dropped": outbox.DROPPED, "due": outbox.DUE, "receivers": names},
                ).rowcount
                _LOG.info("delivering alerts to %s", ", ".join(names))
                if dropped:
                    _LOG.warning(
                        "%d undelivered alert notifications dropped: their receivers"
                        " are no longer configured",
                        dropped,
                    )
        return self._leader

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session: the advisory lock goes with it
        self._conn, self._leader = None, False

    def _hand_over(self) -> None:
        """Give up the lock before a clean stop's close, so a standby takes over at once.

        The session's end frees it too, but the server notices a closed socket a moment
        later, and a standby that asks in between would wait for its next round.
        """
        conn = self._conn
        if self._leader and conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))

    def _deliver_due(self, conn: DictConn, receiver: Receiver, backoff: _Backoff) -> None:
        while True:
            rows = conn.execute(
                _DUE, {"receiver": receiver.name, "due": outbox.DUE, "limit": BATCH}
            ).fetchall()
            if not rows:
                return
            latest: dict[Any, Mapping[str, Any]] = {}
            for row in rows:  # ordered by id: a later transition of an alert replaces
                latest[_record(row).identity] = row
            kept = {row["id"] for row in latest.values()}
            superseded = [row["id"] for row in rows if row["id"] not in kept]
            if superseded:
                self._mark(conn, superseded, outbox.SUPERSEDED, None, failed=0)
            sending = list(latest.values())
            records = [_record(row, self._stuck_trade(conn, row)) for row in sending]
            answers = self._send(receiver, records)
            for answer, group in answers:
                ids = [sending[i]["id"] for i in group]
                if answer.outcome is Outcome.SENT:
                    self._mark(conn, ids, outbox.DELIVERED, None, failed=0)
                elif answer.outcome is Outcome.REFUSED:
                    self._mark(conn, ids, outbox.REFUSED, answer.detail, failed=1)
                    _LOG.error(
                        "%s refused %d alert(s) (%s): %s; kept as refused, not retried",
                        receiver.name,
                        len(ids),
                        ", ".join(sorted({sending[i]["rule"] for i in group})),
                        answer.detail,
                    )
                else:
                    self._mark(conn, ids, outbox.DUE, answer.detail, failed=1)
            failure = _failure(answers)
            if failure is not None:
                backoff.failed(failure.detail)
                return
            backoff.worked()
            if len(rows) < BATCH:
                return

    def _send(
        self, receiver: Receiver, records: Sequence[AlertRecord]
    ) -> list[tuple[Answer, list[int]]]:
        """Send ``records``; each answer with the indexes of the records it covers.

        Stops at the first failure: the records not tried get no answer.
        """
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
        answers: list[tuple[Answer, list[int]]] = []
        for index, alert in enumerate(alerts):
            answers.append((call("POST", endpoint, [alert], receiver.headers()), [index]))
            if answers[-1][0].outcome is Outcome.FAILED:
                break
        return answers

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
        answers: list[tuple[Answer, list[int]]] = []
        for members in groups.values():
            [payload] = notifications.webhook_payloads([entries[i] for i in members], external)
            body = json.dumps(payload).encode()
            headers = receiver.headers()
            if self._delivery.webhook_secret is not None:
                headers[notifications.SIGNATURE_HEADER] = notifications.signature(
                    self._delivery.webhook_secret, body
                )
            answers.append((call("POST", receiver.endpoint(), headers=headers, body=body), members))
            if answers[-1][0].outcome is Outcome.FAILED:
                break  # the receiver is away: the other groups wait with it
        return answers

    @staticmethod
    def _mark(
        conn: DictConn, ids: list[int], status: str, error: str | None, *, failed: int
    ) -> None:
        conn.execute(
            _MARK,
            {
                "status": status,
                "error": error,
                "failed": failed,
                "ids": ids,
                "delivered": outbox.DELIVERED,
            },
        )

    def _stuck_trade(self, conn: DictConn, row: Mapping[str, Any]) -> str | None:
        """A trade still stuck where a stuck-trades alert points (the oldest), for the link."""
        rule = self._rules.get(row["rule"])
        if rule is None or rule.metric != "stuck_trades" or not self._delivery.dashboard_url:
            return None
        labels = row["labels"]
        found = conn.execute(
            _STUCK_TRADE, (labels.get("stage", ""), labels.get("service", ""))
        ).fetchone()
        return None if found is None else str(found["trade_id"])

    def _resend(self, conn: DictConn) -> None:
        """Every firing alert of a known rule to every Alertmanager again, if the flow is live."""
        self._next_resend = time.monotonic() + self._delivery.resend_s
        newest = conn.execute(_NEWEST_WINDOW).fetchone()
        horizon = datetime.now(UTC) - timedelta(seconds=self._delivery.horizon_s)
        if newest is None or newest["start"] is None or newest["start"] < horizon:
            return  # catching up on old data (or nothing yet): not the present
        # A rule no longer in the rules file will never resolve its alerts: let them lapse.
        firing = [row for row in conn.execute(_FIRING).fetchall() if row["rule"] in self._rules]
        for receiver in self._delivery.alertmanagers:
            backoff = self._backoff[receiver.name]
            refusals = conn.execute(_REFUSED_FIRING, (receiver.name, outbox.REFUSED))
            refused = {_record_key(row) for row in refusals}
            rows = [row for row in firing if _record_key(row) not in refused]
            if backoff.ready() and rows:
                self._resend_to(conn, receiver, backoff, rows)

    def _resend_to(
        self,
        conn: DictConn,
        receiver: Receiver,
        backoff: _Backoff,
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        records = [_record(row, self._stuck_trade(conn, row)) for row in rows]
        for start in range(0, len(records), BATCH):
            chunk = records[start : start + BATCH]
            answers = self._send(receiver, chunk)
            sent = [
                chunk[i]
                for answer, group in answers
                for i in group
                if answer.outcome is Outcome.SENT
            ]
            if sent:
                conn.cursor().executemany(
                    _RESENT,
                    [
                        (
                            receiver.name,
                            r.rule,
                            outbox.labels_json(r.labels.items()),
                            r.started_at,
                            outbox.DELIVERED,
                        )
                        for r in sent
                    ],
                )
            failure = _failure(answers)
            if failure is not None:
                backoff.failed(failure.detail)
                return
            backoff.worked()


def _record_key(row: Mapping[str, Any]) -> tuple[str, str, datetime]:
    return row["rule"], outbox.labels_json(row["labels"].items()), row["started_at"]
