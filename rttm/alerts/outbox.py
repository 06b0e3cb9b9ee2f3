"""The alert outbox: one row per notification owed to a receiver, and its statuses.

The metrics sink adds, in the transaction that stores a firing or resolved transition, one
``rttm_alert_outbox`` row per receiver (:func:`outbox_rows`), so a crash can neither lose a
notification nor keep one the tables do not hold. A transition evaluated on a window older
than the horizon is stored as ``history``: replaying old data pages nobody. The
:class:`~rttm.alerts.sender.Sender` delivers the rest and records how it went.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from rttm.alerts.engine import Transition
from rttm.alerts.receivers import Delivery

#: Transition states that notify (pending and inactive stay inside RTTM, as in Prometheus).
NOTIFYING: Final = frozenset({"firing", "resolved"})

# The statuses of an outbox row (the CHECK of sql/0007_alert_outbox.sql lists the same).
DUE: Final = "due"  # to send; attempts and last_error say how the tries went
DELIVERED: Final = "delivered"  # the receiver took it
REFUSED: Final = "refused"  # the receiver answered 4xx (last_error): never retried
HISTORY: Final = "history"  # evaluated on data older than the horizon: not sent
SUPERSEDED: Final = "superseded"  # the alert resolved before this firing notice went out
DROPPED: Final = "dropped"  # its receiver is no longer configured

ENQUEUE: Final = (
    "INSERT INTO rttm_alert_outbox (receiver, rule, labels, started_at, state, status)"
    " VALUES (%s, %s, %s::jsonb, %s, %s, %s)"
    " ON CONFLICT (receiver, rule, labels, started_at, state) DO NOTHING"
)


def labels_json(labels: Iterable[tuple[str, str]]) -> str:
    """Labels as the JSON object ``rttm_alerts`` and the outbox key them by."""
    return json.dumps(dict(labels), sort_keys=True)


def outbox_rows(
    transitions: Iterable[Transition], delivery: Delivery, now: datetime
) -> list[tuple[Any, ...]]:
    """Rows of :data:`ENQUEUE` for the transitions that notify, one per receiver.

    ``now`` is when the transitions were computed: one older than the horizon then is
    history.
    """
    cutoff = now - timedelta(seconds=delivery.horizon_s)
    return [
        (
            receiver.name,
            t.rule,
            labels_json(t.labels),
            t.started_at,
            t.state,
            HISTORY if t.at < cutoff else DUE,
        )
        for t in transitions
        if t.state in NOTIFYING
        for receiver in delivery.receivers
    ]
