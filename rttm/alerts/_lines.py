"""Where keys are in the text of a rules file: tomllib parses but gives no positions."""

from __future__ import annotations

import re

_ANY_HEADER = re.compile(r"\s*\[")
_RULES_HEADER = re.compile(r"\s*\[\[\s*rules\s*\]\]")
_RULES_SUBTABLE = re.compile(r"\s*\[\s*rules\s*\.")


def _key(name: str) -> str:
    quoted = re.escape(name)
    return rf"""(?:{quoted}|"{quoted}"|'{quoted}')"""


class KeyLines:
    """Where keys are in a rules file: a scan of its lines (tomllib gives no positions).

    The k-th ``[[rules]]`` header starts block k, which runs to the next header other than a
    ``[rules.x]`` sub-table. A key missing from its block is placed on the block's header.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.blocks: list[tuple[int, int]] = []
        starts = [i for i, line in enumerate(self.lines) if _RULES_HEADER.match(line)]
        for start in starts:
            end = next(
                (
                    i
                    for i in range(start + 1, len(self.lines))
                    if _ANY_HEADER.match(self.lines[i]) and not _RULES_SUBTABLE.match(self.lines[i])
                ),
                len(self.lines),
            )
            self.blocks.append((start, end))

    def _first(self, pattern: str, start: int, end: int) -> int | None:
        compiled = re.compile(pattern)
        return next((i for i in range(start, end) if compiled.match(self.lines[i])), None)

    def top(self, key: str) -> int:
        """The line of a top-level key (or table header) ``key``; 1 if not found."""
        header = self._first(r"\s*\[", 0, len(self.lines))
        before = len(self.lines) if header is None else header
        found = self._first(rf"\s*{_key(key)}\s*[=.]", 0, before)
        if found is None:
            found = self._first(rf"\s*\[\[?\s*{_key(key)}\s*[\].]", 0, len(self.lines))
        return 1 if found is None else found + 1

    def rule(self, index: int, *path: str) -> int:
        """The line of key ``path`` (e.g. ``match``, ``topic``) in rule ``index``."""
        if index >= len(self.blocks):  # rules written as an inline array: its line
            return self.top("rules")
        start, end = self.blocks[index]
        found: int | None = None
        if len(path) == 2:
            parent, child = map(_key, path)
            found = self._first(rf"\s*{parent}\s*\.\s*{child}\s*=", start + 1, end)
            table = self._first(rf"\s*\[\s*rules\s*\.\s*{parent}\s*\]", start + 1, end)
            if found is None and table is not None:
                found = self._first(rf"\s*{child}\s*=", table + 1, end)
        if found is None and path:
            found = self._first(rf"\s*{_key(path[0])}\s*[=.]", start + 1, end)
            if found is None:
                found = self._first(rf"\s*\[\s*rules\s*\.\s*{_key(path[0])}\s*\]", start + 1, end)
        return (start if found is None else found) + 1
