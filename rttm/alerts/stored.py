"""SQL over the stored alert transitions (``rttm_alerts``), shared by the views and the sender."""

from __future__ import annotations

from typing import Final

#: The columns of a transition as the views and the sender read them.
ALERT_COLUMNS: Final = "rule, labels, state, value, severity, summary, started_at, at, resolved_at"

#: The latest transition of each alert series (rule, labels): a newer activation of the
#: series supersedes an older one even if that one was never closed (an engine restarted
#: without its recovery store does not know to close it).
LATEST_PER_SERIES: Final = f"""
SELECT DISTINCT ON (rule, labels) {ALERT_COLUMNS}
FROM rttm_alerts
ORDER BY rule, labels, at DESC, started_at DESC,
         array_position(ARRAY['pending', 'firing', 'resolved', 'inactive'], state) DESC
"""  # noqa: S608 - a constant column list, no input
