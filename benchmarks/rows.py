"""Table rows as the sink receives them, from the shared seeded generator.

Rows are decoded by the real path (``decode_message`` → ``table_row``); each call to
:func:`trade_rows` starts at a new Kafka offset, so the rows of successive rounds never
share a dedupe key (a round writes new rows, as live traffic does).
"""

from __future__ import annotations

import itertools

from rttm.core.decode import decode_message
from rttm.ingest.rows import Row, table_row
from support.data import messages

TRADES = "rttm.trade.events"
_NEXT_OFFSET = itertools.count(step=1_000_000)


def trade_rows(count: int) -> list[Row]:
    """``count`` new trade-event rows with unique dedupe keys."""
    base = next(_NEXT_OFFSET)
    rows = []
    for n, value in enumerate(messages(TRADES, count)):
        table, row = table_row(decode_message(TRADES, None, value, 0, base + n, 0))
        assert table == "rttm_trade_events", table
        rows.append(row)
    return rows
