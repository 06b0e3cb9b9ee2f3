"""Alert text templates: ``{{ $value }}`` and ``{{ $labels.NAME }}``, as Prometheus writes them.

A rule's ``summary`` and ``description`` may hold these two forms, and only these, so that
``rttm rules export --prometheus`` copies the text unchanged into a Prometheus rule, where
they mean the same. A label the alert does not have renders as ``""``, as in Prometheus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

#: One ``{{ … }}`` action (non-greedy, so two on a line stay two).
_ACTION: Final = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_VALUE: Final = re.compile(r"\s*\$value\s*")
_LABEL: Final = re.compile(r"\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*")


def problems(text: str) -> list[str]:
    """What in ``text`` is not a supported action (empty: it renders)."""
    found = [
        f"unsupported template {match.group(0)!r}: use {{{{ $value }}}} or {{{{ $labels.NAME }}}}"
        for match in _ACTION.finditer(text)
        if not (_VALUE.fullmatch(match.group(1)) or _LABEL.fullmatch(match.group(1)))
    ]
    rest = _ACTION.sub("", text)
    if "{{" in rest or "}}" in rest:
        found.append("unbalanced '{{' or '}}'")
    return found


def render(text: str, value: float, labels: Mapping[str, str]) -> str:
    """``text`` with each action replaced by the value or the label (checked text only)."""

    def action(match: re.Match[str]) -> str:
        if _VALUE.fullmatch(match.group(1)):
            return format_value(value)
        label = _LABEL.fullmatch(match.group(1))
        return labels.get(label.group(1), "") if label else match.group(0)

    return _ACTION.sub(action, text)


def format_value(value: float) -> str:
    """A number as Go prints a float64 (``%v``): ``1``, ``0.25``, ``12000``, ``1e+06``.

    The shortest digits that read back as ``value``, in exponent form when the exponent is
    below -4 or at least 6, so the text matches what Prometheus renders for the same value.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)  # digits before the decimal point
    minus = "-" if sign else ""
    if not -4 <= point - 1 < 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{point - 1:+03d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return minus + digits + "0" * (point - len(digits))
    return f"{minus}{digits[:point]}.{digits[point:]}"
