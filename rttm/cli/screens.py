"""Turn the views (``rttm.views``) into tables for the terminal.

Each screen is a list of :class:`Block` (a title, and a table or a line). In a terminal they
are drawn with rich; piped, they are plain aligned text without colour or box characters,
so ``grep`` and ``awk`` work on them. ``--json`` bypasses this module entirely.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

_STATUS_STYLE = {
    "OK": "green",
    "WARN": "yellow",
    "STALL": "red",
    "STOP": "bold red",
    "firing": "bold red",
    "pending": "yellow",
    "resolved": "green",
    "critical": "bold red",
    "warning": "yellow",
}


#: What producer text must not bring to the operator's terminal: C0 controls (ESC starts
#: colour, cursor, title and hyperlink sequences; CR and BS overwrite), DEL, C1 controls
#: (0x9b is a one-byte CSI), and the bidi and line-separator characters that reorder or
#: break what is read. Each is shown as its escape (``\x1b``) instead.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control or bidi character escaped, safe to print to a terminal."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass
class Block:
    """A titled table (``columns`` and ``rows``) or, without columns, a titled line.

    ``more``: rows the view left out (its ``omitted``), said under the table.
    """

    title: str
    columns: Sequence[str] = ()
    rows: list[Sequence[object]] = field(default_factory=list)
    empty: str = "none"
    more: int = 0


def _untracked(count: int, minutes: int) -> list[Block]:
    """A line saying how many trades stuck detection could not watch, if any."""
    if not count:
        return []
    line = (
        f"{count:,} trades in the last {minutes} min were not tracked (the engine's"
        " RTTM_METRICS_MAX_TRADES): stuck detection cannot see them"
    )
    return [Block(line)]


def more_line(count: int) -> str:
    """What a table says under its rows about those the view left out."""
    return f"and {count:,} more"


def _cell(value: object) -> str:
    """A value as the table shows it, escaped by :func:`printable` (it may be producer text)."""
    return printable(_shown(value))


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(blocks: Sequence[Block], out: Any = None) -> None:
    """Print ``blocks``: rich in a terminal, plain text otherwise.

    Every title and cell passes :func:`printable`; rich gets :class:`Text`, never markup.
    """
    stream = out or sys.stdout
    console = Console(file=stream, highlight=False, soft_wrap=False)
    if console.is_terminal:
        for block in blocks:
            title = Text(printable(block.title), style="bold")
            if not block.columns:
                console.print(title)
                continue
            table = Table(title=title, title_justify="left")
            for name in block.columns:
                table.add_column(name)
            for row in block.rows:
                table.add_row(*(Text(_cell(v), style=_STATUS_STYLE.get(str(v), "")) for v in row))
            if not block.rows:
                table.add_row(Text(printable(block.empty)), *[""] * (len(block.columns) - 1))
            console.print(table)
            if block.more:
                console.print(Text(f"  {more_line(block.more)}", style="dim"))
        return
    for block in blocks:
        stream.write(printable(block.title) + "\n")
        if not block.columns:
            continue
        cells = [list(block.columns)] + [[_cell(v) for v in row] for row in block.rows]
        if not block.rows:
            stream.write(f"  {printable(block.empty)}\n")
            continue
        widths = [max(len(row[i]) for row in cells) for i in range(len(block.columns))]
        for row in cells:
            stream.write(
                "  "
                + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                + "\n"
            )
        if block.more:
            stream.write(f"  {more_line(block.more)}\n")
        stream.write("\n")


def alert_rows(alerts: Sequence[dict[str, Any]]) -> list[Sequence[object]]:
    """Rows of an alerts table."""
    return [
        (
            a["state"],
            a["severity"],
            a["rule"],
            ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items())),
            a["value"],
            a["started_at"],
            a["resolved_at"] or a["at"],
        )
        for a in alerts
    ]


ALERT_COLUMNS = ("state", "severity", "rule", "labels", "value", "since", "at")
ACTIVE_COLUMNS = (*ALERT_COLUMNS, "delivery", "silenced")


def active_alert_rows(alerts: Sequence[dict[str, Any]]) -> list[Sequence[object]]:
    """Rows of the active-alerts table: an alert's row, its delivery and its silences."""
    return [
        (
            *row,
            _delivery(a),
            "-" if a["silenced_by"] is None else ", ".join(a["silenced_by"]) or "no",
        )
        for row, a in zip(alert_rows(alerts), alerts, strict=True)
    ]


def _delivery(alert: dict[str, Any]) -> str:
    shown = alert["delivery"] or "-"
    return f"{shown} ({alert['delivery_error']})" if alert["delivery_error"] else shown


def status_screen(data: dict[str, Any]) -> list[Block]:
    """The blocks of ``rttm status``."""
    if data["as_of"] is None:
        return [Block("no metrics yet: is the metrics flow running? (rttm metrics)")]
    tps, trades, dlq, omitted = data["tps"], data["trades"], data["dlq"], data["omitted"]
    minutes = data["minutes"]
    blocks = [
        Block(f"as of {data['as_of']} (windows of {data['window_seconds']:g} s)"),
        Block(
            f"TPS now {_cell(tps['now'])}, {minutes}-min average {_cell(tps['avg'])}; "
            f"trades started {trades['started']:,}, completed {trades['completed']:,}, "
            f"rejected {trades['rejected']:,}"
        ),
        Block(
            "TPS by service",
            ("service", "now", f"avg {minutes} min"),
            [(s["service"], s["now"], s["avg"]) for s in tps["by_service"]],
            more=tps["omitted"]["by_service"],
        ),
        Block(
            "consumers",
            ("service", "topic", "status", "lag", "lag s", "time to data loss s"),
            [
                (
                    c["service"],
                    c["topic"],
                    c["status"],
                    c["lag"],
                    c["lag_seconds"],
                    c["time_to_data_loss_seconds"],
                )
                for c in data["consumers"]
            ],
            more=omitted["consumers"],
        ),
        Block(
            "DLQ",
            ("topic", "depth"),
            [(d["topic"], d["depth"]) for d in dlq["depth"]],
            more=dlq["omitted"]["depth"],
        ),
        Block(
            "errors",
            ("service", f"errors {minutes} min", "per s now"),
            [(e["service"], e["errors"], e["rate"]) for e in data["errors"]],
            more=omitted["errors"],
        ),
        Block(
            "stuck trades",
            ("trade", "stage", "service", "last event", "since"),
            [
                (
                    s["trade_id"],
                    s["stage"],
                    s["service"],
                    s["last_event_type"],
                    s["last_event_time"],
                )
                for s in data["stuck"]
            ],
            more=omitted["stuck"],
        ),
        *_untracked(data["trades"].get("untracked", 0), minutes),
        Block(
            "alerts",
            ALERT_COLUMNS,
            alert_rows(data["alerts"]["firing"] + data["alerts"]["pending"]),
            more=sum(data["alerts"]["omitted"].values()),
        ),
    ]
    latency = data["latency"]["e2e"]
    if latency:
        quantiles = ", ".join(f"{q} {_cell(latency.get(q))}" for q in ("p50", "p95", "p99"))
        blocks.insert(2, Block(f"end-to-end latency ms: {quantiles}"))
    return blocks


def _cut_text(entry: dict[str, Any], name: str) -> object:
    """A listed text, marked when the view cut it (the API's ``/api/text`` has it whole)."""
    text = entry[name]
    if entry.get(f"{name}_truncated"):
        return f"{text} \u2026 [cut, {entry[f'{name}_length']:,} chars in all]"
    return text


def _listed(title: str, shown: int, total: int) -> str:
    """A list's title, saying when it holds only the newest of its entries."""
    return title if shown >= total else f"{title} (newest {shown:,} of {total:,})"


def trace_page_line(data: dict[str, Any], again: str, newest: bool = True) -> str:
    """Which events the page shows, and the command of the next older page."""
    shown, total = len(data["events"]), data["total"]
    if newest and data["next"] is None:
        return f"showing all {total:,} events"
    line = (
        f"showing the newest {shown:,} of {total:,} events"
        if newest
        else (f"showing {shown:,} older events of {total:,}")
    )
    if data["next"] is None:
        return f"{line}; no older events"
    return f"{line}; older: {again} --before {data['next']}"


def trace_screen(
    data: dict[str, Any], again: str | None = None, newest: bool = True
) -> list[Block]:
    """The blocks of ``rttm trace``; ``again`` is the command that showed them, for paging."""
    stuck = data["stuck"]
    state = data["outcome"]
    if stuck and not stuck["recovered_at"]:
        state = f"STUCK at {stuck['stage']} ({stuck['service']}) since {stuck['last_event_time']}"
    again = again or f"rttm trace {shlex.quote(data['trade_id'])}"
    return [
        Block(f"trade {data['trade_id']}: {state}; stage {data['stage'] or '-'}"),
        Block(
            "timeline",
            ("time", "service", "event", "status", "hop", "+ms", "message"),
            [
                (
                    e["time"],
                    e["service"],
                    e["event_type"],
                    e["status"],
                    f"{e['source_queue'] or '-'} -> {e['target_queue'] or '-'}",
                    e["since_previous_ms"],
                    _cut_text(e, "message"),
                )
                for e in data["events"]
            ],
        ),
        Block(
            _listed("DLQ", len(data["dlq"]), data["dlq_total"]),
            ("time", "service", "topic", "reason"),
            [(d["time"], d["service"], d["topic"], _cut_text(d, "reason")) for d in data["dlq"]],
        ),
        Block(
            _listed("errors", len(data["errors"]), data["errors_total"]),
            ("time", "service", "type", "message"),
            [
                (e["time"], e["service"], e["error_type"], _cut_text(e, "error_message"))
                for e in data["errors"]
            ],
        ),
        Block(
            _listed("logs", len(data["logs"]), data["logs_total"]),
            ("time", "service", "level", "category", "message"),
            [
                (g["time"], g["service"], g["level"], g["category"], _cut_text(g, "message"))
                for g in data["logs"]
            ],
        ),
        Block(trace_page_line(data, again, newest)),
    ]


def alerts_screen(data: dict[str, Any]) -> list[Block]:
    """The blocks of ``rttm alerts``."""
    omitted = data["omitted"]
    return [
        Block(
            "active alerts",
            ACTIVE_COLUMNS,
            active_alert_rows(data["firing"] + data["pending"]),
            more=omitted["firing"] + omitted["pending"],
        ),
        Block(
            "recent transitions", ALERT_COLUMNS, alert_rows(data["recent"]), more=omitted["recent"]
        ),
    ]
