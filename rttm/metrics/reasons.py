"""DLQ reasons as metric labels: free text grouped, and a bounded number named per topic.

A dead-letter reason is written by a producer, often with the message's id, an offset or a
timestamp in it: ``"trade TRD-000123 rejected at offset 4411"``. As a label, every such text
would be a series of its own. :func:`reason_group` masks what varies (UUIDs; ids and hex runs,
which mix letters and digits; numbers), so the reasons group by what went wrong; the stored
DLQ rows (``rttm_dlq_events``) keep the exact text. :class:`ReasonBook` then names at most
``cap`` reasons per topic, the most frequent ones, and counts the rest under ``__other__``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rttm.metrics.limits import OTHER
from rttm.metrics.points import bounded_value

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b")
#: A token of 6+ characters mixing letters and digits: an id ("TRD-2026-000123", "req_9f2k1")
#: or a hex run ("0xdeadbeef", "9f8e7d6c"; not the word "facade", which has no digit).
_ID = re.compile(r"\b(?=[\w-]*[A-Za-z])(?=[\w-]*\d)[\w-]{6,}\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def reason_group(reason: str) -> str:
    """``reason`` with its varying parts masked (``<uuid>``, ``<id>``, ``#``)."""
    text = _UUID.sub("<uuid>", reason)
    text = _ID.sub("<id>", text)
    return bounded_value(_NUMBER.sub("#", text))


@dataclass
class ReasonBook:
    """DLQ depth per topic and named reason, since the start: at most ``cap`` names per topic.

    Topics are bounded by ``topics`` the same way (the rest are ``__other__``). A reason
    outside the book enters when its topic has room, or when it is more frequent than the
    least frequent named reason, whose depth then moves to ``__other__`` (so the named
    reasons are, approximately, the most frequent ones; the topic's total stays exact).
    """

    cap: int
    topics: int
    depth: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> reason -> n

    def add(self, topic: str, reason: str, count: int) -> tuple[str, str]:
        """Count ``count`` messages of ``reason`` on ``topic``; the labels they are named by."""
        if topic not in self.depth and len(self.depth) >= self.topics:
            topic = OTHER
        reasons = self.depth.setdefault(topic, {})
        if reason not in reasons and reason != OTHER:
            named = len(reasons) - (OTHER in reasons)
            if named >= self.cap:
                weakest = min((r for r in reasons if r != OTHER), key=lambda r: (reasons[r], r))
                if reasons[weakest] < count:
                    reasons[OTHER] = reasons.get(OTHER, 0) + reasons.pop(weakest)
                else:
                    reason = OTHER
        reasons[reason] = reasons.get(reason, 0) + count
        return topic, reason

    def by_topic(self) -> dict[str, int]:
        """The depth of every topic (all reasons)."""
        return {topic: sum(reasons.values()) for topic, reasons in self.depth.items()}
