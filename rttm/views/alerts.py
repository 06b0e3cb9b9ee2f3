"""Alerts now (pending and firing) and their recent transitions."""

from __future__ import annotations

from typing import Any

from rttm.views.common import ALERT_COLUMNS, Conn, alert

#: The latest transition of each alert series (rule, labels): a newer activation of the
#: series supersedes an older one even if that one was never closed (an engine restarted
#: without its recovery store does not know to close it).
LATEST_PER_SERIES = f"""
SELECT DISTINCT ON (rule, labels) {ALERT_COLUMNS}
FROM rttm_alerts
ORDER BY rule, labels, at DESC, started_at DESC,
         array_position(ARRAY['pending', 'firing', 'resolved', 'inactive'], state) DESC
"""  # noqa: S608 - a constant column list, no input
_CURRENT = f"""
SELECT * FROM ({LATEST_PER_SERIES}) latest
WHERE state IN ('pending', 'firing')
ORDER BY array_position(ARRAY['critical', 'warning', 'info'], severity), started_at
"""  # noqa: S608 - a constant column list, no input
_RECENT = f"SELECT {ALERT_COLUMNS} FROM rttm_alerts ORDER BY at DESC, rule LIMIT %s"  # noqa: S608


def active(conn: Conn) -> dict[str, list[dict[str, Any]]]:
    """``{"firing": [...], "pending": [...]}``, most severe first."""
    rows = [alert(row) for row in conn.execute(_CURRENT).fetchall()]
    return {
        "firing": [a for a in rows if a["state"] == "firing"],
        "pending": [a for a in rows if a["state"] == "pending"],
    }


def alerts(conn: Conn, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
    """Active alerts and the ``limit`` latest transitions, newest first."""
    recent = [alert(row) for row in conn.execute(_RECENT, (limit,)).fetchall()]
    return {**active(conn), "recent": recent}
