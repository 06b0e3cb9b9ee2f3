"""Silences in Alertmanager: create one from RTTM, and see which RTTM alerts are silenced.

A silence made here matches ``alertname`` (the rule), the given labels and
``source="rttm"``, so it never mutes another system's alert of the same name. An HA pair of
Alertmanagers shares silences through its cluster, so one is created on the first
Alertmanager that takes it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlencode

from rttm.alerts.http_client import Outcome, call
from rttm.alerts.notifications import SOURCE_NAME, SOURCE_VALUE, iso
from rttm.alerts.receivers import ALERTS_PATH, ENV_ALERTMANAGER, SILENCES_PATH, Receiver
from rttm.core.errors import RttmError

#: How long the dashboard reuses Alertmanager's answer, and waits for one.
CACHE_S: Final = 5.0
LOOKUP_TIMEOUT_S: Final = 1.0


def create(
    managers: Sequence[Receiver],
    rule: str,
    matchers: Mapping[str, str],
    duration_s: float,
    comment: str,
    author: str,
) -> tuple[str, Receiver]:
    """Create the silence; returns its id and the Alertmanager that took it.

    Raises:
        RttmError: none configured, none reachable (each one's reason), or refused.
    """
    if not managers:
        msg = f"no Alertmanager to silence in: set {ENV_ALERTMANAGER}"
        raise RttmError(msg)
    start = datetime.now(UTC)
    labels = {**matchers, "alertname": rule, SOURCE_NAME: SOURCE_VALUE}
    body = {
        "matchers": [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in sorted(labels.items())
        ],
        "startsAt": iso(start),
        "endsAt": iso(start + timedelta(seconds=duration_s)),
        "createdBy": author,
        "comment": comment,
    }
    failures = []
    for manager in managers:
        answer = call("POST", manager.endpoint(SILENCES_PATH), body, manager.headers())
        if answer.outcome is Outcome.SENT:
            try:
                return str(json.loads(answer.body)["silenceID"]), manager
            except (ValueError, KeyError, TypeError):
                msg = (
                    f"{manager.name} answered {answer.detail} without a silence id:"
                    " is it an Alertmanager?"
                )
                raise RttmError(msg) from None
        if answer.outcome is Outcome.REFUSED:
            msg = f"{manager.name} refused the silence: {answer.detail}"
            raise RttmError(msg)
        failures.append(f"{manager.name}: {answer.detail}")
    msg = "cannot reach any Alertmanager: " + "; ".join(failures)
    raise RttmError(msg)


class SilencedLookup:
    """Which RTTM alerts Alertmanager holds as silenced: fingerprint → silence ids.

    Asks the first Alertmanager that answers, at most every :data:`CACHE_S`; ``None``
    means not known (none configured, none answered).
    """

    def __init__(self, managers: Sequence[Receiver]) -> None:
        self._managers = tuple(managers)
        self._lock = threading.Lock()
        self._at = -CACHE_S
        self._known: dict[str, list[str]] | None = None

    @property
    def configured(self) -> bool:
        """Whether there is an Alertmanager to ask."""
        return bool(self._managers)

    def silenced(self) -> dict[str, list[str]] | None:
        """The silenced RTTM alerts by fingerprint, or ``None`` if unknown."""
        if not self._managers:
            return None
        with self._lock:
            if time.monotonic() - self._at >= CACHE_S:
                self._known = self._ask()
                self._at = time.monotonic()
            return self._known

    def _ask(self) -> dict[str, list[str]] | None:
        query = urlencode(
            {
                "filter": f'{SOURCE_NAME}="{SOURCE_VALUE}"',
                "active": "false",
                "silenced": "true",
                "inhibited": "true",
            }
        )
        for manager in self._managers:
            answer = call(
                "GET",
                manager.endpoint(ALERTS_PATH) + "?" + query,
                headers=manager.headers(),
                timeout=LOOKUP_TIMEOUT_S,
            )
            if answer.outcome is Outcome.SENT:
                try:
                    return {
                        str(alert["fingerprint"]): list(alert["status"].get("silencedBy") or [])
                        for alert in json.loads(answer.body)
                    }
                except (ValueError, KeyError, TypeError, AttributeError):
                    return None  # not Alertmanager's answer: not known
        return None
