"""Durations as people write them in configuration files: ``500ms``, ``30s``, ``1m30s``."""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"500ms"``, ``"30s"``, ``"1.5h"`` or ``"1m30s"``.

    Units are ms, s, m, h and d, largest first and each at most once (Prometheus' rule).

    Raises:
        ValueError: empty, negative or malformed text, named in the message.
    """
    if not _DURATION.fullmatch(text):
        if not text.strip():
            msg = "empty duration: write a number and a unit, such as '30s'"
        elif text.strip().startswith("-"):
            msg = f"negative duration {text!r}"
        else:
            msg = (
                f"invalid duration {text!r}: expected a number and a unit "
                "(ms, s, m, h, d), such as '500ms', '30s', '1.5h' or '1m30s'"
            )
        raise ValueError(msg)
    parts = _DURATION_PART.findall(text)
    ranks = [list(_UNITS).index(unit) for _, unit in parts]
    if ranks != sorted(set(ranks)):
        msg = f"invalid duration {text!r}: units go from largest to smallest, each once ('1h30m')"
        raise ValueError(msg)
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def parse_positive_duration(text: str) -> float:
    """:func:`parse_duration`, refusing zero: for intervals and lifetimes."""
    seconds = parse_duration(text)
    if seconds <= 0:
        msg = f"must be longer than 0s, got {text!r}"
        raise ValueError(msg)
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` as :func:`parse_duration` and Prometheus read it: ``1m30s``, ``500ms``, ``0s``.

    Whole units from days down to milliseconds; a remainder below 1 ms is dropped.
    """
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit] * 1000)
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
