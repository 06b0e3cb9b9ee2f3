"""Alerts now (pending and firing), how their notifications went, and recent transitions.

Each active alert carries ``delivery``: how its firing notification went, from the outbox
(``delivered``, ``retrying``, ``queued``, ``refused``, ``history`` — fired on data older than
the horizon, not sent —, ``not configured`` — no receiver when it fired —, or ``None`` while
pending, which is never sent), ``delivery_error`` (the last failure or refusal), and
``silenced_by`` (the Alertmanager silences muting it; ``None`` when not known or pending).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rttm.alerts import outbox
from rttm.alerts.notifications import fingerprint, manager_labels
from rttm.alerts.stored import ALERT_COLUMNS, LATEST_PER_SERIES
from rttm.core.db.connect import DictConn
from rttm.views.budget import DEFAULT_BUDGET_S, Deadline
from rttm.views.common import alert
from rttm.views.limits import DEFAULT_MAX_ENTRIES

#: The active alerts, at most ``%(cap)s`` per state (most severe, then longest standing,
#: first), each with ``total``: how many of its state are active. The outbox is joined to
#: the kept ones only.
_CURRENT = f"""
WITH latest AS ({LATEST_PER_SERIES}),
ranked AS (
    SELECT latest.*,
           array_position(ARRAY['critical', 'warning', 'info'], latest.severity) AS severity_rank,
           count(*) OVER (PARTITION BY latest.state) AS total,
           row_number() OVER (
               PARTITION BY latest.state
               ORDER BY array_position(ARRAY['critical', 'warning', 'info'], latest.severity),
                        latest.started_at, latest.rule, latest.labels) AS n
    FROM latest WHERE latest.state IN ('pending', 'firing')
),
kept AS (SELECT * FROM ranked WHERE n <= %(cap)s)
SELECT kept.*, sent.statuses, sent.attempts, sent.last_error
FROM kept
LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT o.status) AS statuses, max(o.attempts) AS attempts,
           max(o.last_error) AS last_error
    FROM rttm_alert_outbox o
    WHERE o.rule = kept.rule AND o.labels = kept.labels
      AND o.started_at = kept.started_at AND o.state = 'firing'
) sent ON true
ORDER BY kept.severity_rank, kept.started_at, kept.rule, kept.labels
"""  # noqa: S608 - a constant column list, no input
_RECENT = f"""
SELECT {ALERT_COLUMNS} FROM rttm_alerts
ORDER BY at DESC, rule, labels, started_at DESC, state LIMIT %(cap)s
"""  # noqa: S608 - a constant column list, no input
#: Transitions counted for ``omitted.recent``, at most ``%(most)s``: the table keeps every
#: transition ever made, and a poll must not scan it all.
_TRANSITIONS = "SELECT count(*) AS n FROM (SELECT 1 FROM rttm_alerts LIMIT %(most)s) t"
#: ``omitted.recent`` counts older transitions up to this many.
COUNTED_TRANSITIONS = 100_000


def delivery_state(state: str, statuses: Sequence[str] | None, attempts: int | None) -> str | None:
    """How the firing notification of an alert went, from its outbox rows' statuses.

    With several receivers: ``refused`` if one refused it, else ``retrying`` or ``queued``
    while one still owes it, else ``delivered`` if one took it.
    """
    if state != "firing":
        return None
    found = set(statuses or ()) - {outbox.SUPERSEDED, outbox.DROPPED}
    if not found:
        return "not configured"
    if outbox.REFUSED in found:
        return "refused"
    if outbox.DUE in found:
        return "retrying" if attempts else "queued"
    return "delivered" if outbox.DELIVERED in found else "history"


def _active_alert(
    row: dict[str, Any], silenced: Mapping[str, Sequence[str]] | None
) -> dict[str, Any]:
    shown = alert(row)
    shown["delivery"] = delivery_state(row["state"], row["statuses"], row["attempts"])
    shown["delivery_error"] = row["last_error"] if shown["delivery"] != "delivered" else None
    if silenced is None or row["state"] != "firing":  # a pending alert is not in Alertmanager
        shown["silenced_by"] = None
    else:
        key = fingerprint(manager_labels(row["rule"], row["labels"], row["severity"]))
        shown["silenced_by"] = list(silenced.get(key, ()))
    return shown


def active(
    conn: DictConn,
    silenced: Mapping[str, Sequence[str]] | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """``{"firing": [...], "pending": [...], "omitted": {"firing": n, "pending": n}}``.

    At most ``max_entries`` of each state, most severe first; ``omitted`` counts the rest.
    ``silenced`` maps Alertmanager fingerprints to silence ids (None: not known).
    """
    deadline = deadline or Deadline(DEFAULT_BUDGET_S, "alerts")
    rows = deadline.execute(conn, _CURRENT, {"cap": max_entries})
    result: dict[str, Any] = {"firing": [], "pending": [], "omitted": {}}
    totals = {"firing": 0, "pending": 0}
    for row in rows:
        result[row["state"]].append(_active_alert(row, silenced))
        totals[row["state"]] = int(row["total"])
    result["omitted"] = {state: totals[state] - len(result[state]) for state in totals}
    return result


def alerts(
    conn: DictConn,
    limit: int = 50,
    silenced: Mapping[str, Sequence[str]] | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """Active alerts and the latest transitions (``limit``, at most ``max_entries``).

    ``omitted`` counts the active alerts left out (``firing``, ``pending``) and the older
    transitions not listed (``recent``).
    """
    deadline = deadline or Deadline(DEFAULT_BUDGET_S, "alerts")
    shown = min(limit, max_entries)
    recent = [alert(row) for row in deadline.execute(conn, _RECENT, {"cap": shown})]
    total = len(recent)
    if len(recent) == shown:
        total = deadline.execute(conn, _TRANSITIONS, {"most": COUNTED_TRANSITIONS})[0]["n"]
    now = active(conn, silenced, max_entries, deadline)
    omitted = {**now["omitted"], "recent": int(total) - len(recent)}
    return {**now, "recent": recent, "omitted": omitted}
