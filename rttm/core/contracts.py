"""The five message contracts: a re-export of :mod:`rttm_emit.contracts`, their one definition.

The contracts live in the ``rttm-emit`` distribution that producers install; this module
keeps ``from rttm.core.contracts import …`` working. New code may import either.
"""

from __future__ import annotations

from rttm_emit.contracts import (
    ID_MAX_CHARS,
    INT32_MAX,
    INT64_MAX,
    TEXT_MAX_CHARS,
    Contract,
    DlqEvent,
    ErrorEvent,
    Id,
    LogEvent,
    Message,
    Offset,
    Partition,
    QueueMetrics,
    Text,
    Timestamp,
    TradeEvent,
)

__all__ = [
    "ID_MAX_CHARS",
    "INT32_MAX",
    "INT64_MAX",
    "TEXT_MAX_CHARS",
    "Contract",
    "DlqEvent",
    "ErrorEvent",
    "Id",
    "LogEvent",
    "Message",
    "Offset",
    "Partition",
    "QueueMetrics",
    "Text",
    "Timestamp",
    "TradeEvent",
]
