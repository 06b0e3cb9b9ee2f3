"""One screen of platform health: TPS, trades, latency, consumers, DLQ, errors, stuck, alerts.

Everything comes from the metrics windows of the last ``minutes`` before the newest window
(one indexed range read, aggregated here), plus open stuck trades and active alerts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from rttm.metrics.windows import STATUS_NAMES
from rttm.views.alerts import active
from rttm.views.common import Conn, iso, number

DEFAULT_MINUTES = 15
STUCK_SHOWN = 100
_LATEST = "SELECT window_start, window_end FROM rttm_metrics ORDER BY window_start DESC LIMIT 1"
_WINDOWS = """
SELECT metric, window_start, labels, value FROM rttm_metrics
WHERE window_start > %s AND metric = ANY(%s) ORDER BY window_start
"""
_STUCK = """
SELECT trade_id, stage, service_name, last_event_type, last_event_time, detected_at
FROM rttm_stuck_trades WHERE recovered_at IS NULL ORDER BY detected_at DESC LIMIT %s
"""
_METRICS = [
    "tps", "trades_started", "trades_completed", "trades_rejected", "e2e_latency_ms",
    "hop_latency_ms", "consumer_status", "time_to_data_loss_seconds", "queue_lag",
    "queue_lag_seconds", "consume_rate", "dlq_depth", "dlq_rate", "dlq_events", "errors",
    "error_rate", "log_events",
]  # fmt: skip

Row = tuple[datetime, dict[str, str], float]
LabelKey = tuple[tuple[str, str], ...]


def _latest(rows: list[Row]) -> dict[LabelKey, float]:
    """The newest value of each label set (rows are in time order)."""
    return {tuple(sorted(labels.items())): value for _, labels, value in rows}


def _by_window(rows: list[Row]) -> list[tuple[datetime, float]]:
    sums: dict[datetime, float] = defaultdict(float)
    for start, _, value in rows:
        sums[start] += value
    return sorted(sums.items())


def status(conn: Conn, minutes: int = DEFAULT_MINUTES) -> dict[str, Any]:
    """The status screen as JSON-ready data (see the module docstring)."""
    newest = conn.execute(_LATEST).fetchone()
    result: dict[str, Any] = {"as_of": None, "window_seconds": None, "minutes": minutes}
    series: dict[str, list[Row]] = defaultdict(list)
    if newest is not None:
        result["as_of"] = iso(newest["window_end"])
        length = (newest["window_end"] - newest["window_start"]).total_seconds()
        result["window_seconds"] = length
        since = newest["window_start"] - timedelta(minutes=minutes)
        for row in conn.execute(_WINDOWS, (since, _METRICS)).fetchall():
            series[row["metric"]].append((row["window_start"], row["labels"], row["value"]))
    result["tps"] = _tps(series["tps"])
    result["trades"] = {
        name: int(sum(v for _, _, v in series[f"trades_{name}"]))
        for name in ("started", "completed", "rejected")
    }
    result["latency"] = _latency(series)
    result["consumers"] = _consumers(series)
    result["dlq"] = _dlq(series)
    errors: dict[str, float] = defaultdict(float)
    for _, labels, value in series["errors"]:
        errors[labels["service"]] += value
    newest_start = newest["window_start"] if newest is not None else None
    # A rate is written only for windows with errors: none in the newest window means 0.
    rates = _latest([row for row in series["error_rate"] if row[0] == newest_start])
    result["errors"] = [
        {"service": service, "errors": int(count),
         "rate": number(rates.get((("service", service),), 0.0))}
        for service, count in sorted(errors.items(), key=lambda kv: -kv[1])
    ]  # fmt: skip
    logs: dict[tuple[str, str], float] = defaultdict(float)
    for _, labels, value in series["log_events"]:
        logs[(labels["service"], labels["level"])] += value
    result["logs"] = [
        {"service": service, "level": level, "events": int(count)}
        for (service, level), count in sorted(logs.items(), key=lambda kv: -kv[1])
    ]
    result["stuck"] = [
        {"trade_id": row["trade_id"], "stage": row["stage"], "service": row["service_name"],
         "last_event_type": row["last_event_type"],
         "last_event_time": iso(row["last_event_time"]), "detected_at": iso(row["detected_at"])}
        for row in conn.execute(_STUCK, (STUCK_SHOWN,)).fetchall()
    ]  # fmt: skip
    result["alerts"] = active(conn)
    return result


def _tps(rows: list[Row]) -> dict[str, Any]:
    totals = _by_window(rows)
    per_service: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for start, labels, value in rows:
        per_service[labels["service"]].append((start, value))
    last = totals[-1][0] if totals else None
    return {
        "now": number(totals[-1][1], 2) if totals else None,
        "avg": number(sum(v for _, v in totals) / len(totals), 2) if totals else None,
        "series": [{"t": iso(start), "value": number(value, 2)} for start, value in totals],
        "by_service": [
            {"service": service,
             "now": number(sum(v for s, v in values if s == last), 2),
             "avg": number(sum(v for _, v in values) / len(totals), 2)}
            for service, values in sorted(per_service.items())
        ],
    }  # fmt: skip


def _latency(series: dict[str, list[Row]]) -> dict[str, Any]:
    e2e = _latest(series["e2e_latency_ms"])
    hops: dict[tuple[str, str], dict[str, float | None]] = defaultdict(dict)
    for key, value in _latest(series["hop_latency_ms"]).items():
        labels = dict(key)
        hops[(labels["from_stage"], labels["to_stage"])][labels["quantile"]] = number(value, 1)
    return {
        "e2e": {dict(key)["quantile"]: number(value, 1) for key, value in sorted(e2e.items())}
        or None,
        "hops": [{"from_stage": a, "to_stage": b, **q} for (a, b), q in hops.items()],
    }


def _consumers(series: dict[str, list[Row]]) -> list[dict[str, Any]]:
    status = _latest(series["consumer_status"])
    loss = _latest(series["time_to_data_loss_seconds"])
    lag, seconds, rate = (_latest(series[m]) for m in ("queue_lag", "queue_lag_seconds",
                                                       "consume_rate"))  # fmt: skip
    partitions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for key, value in sorted(lag.items(), key=lambda kv: kv[0]):
        labels = dict(key)
        partitions[(labels["service"], labels["topic"])].append({
            "partition": labels["partition"], "lag": int(value),
            "lag_seconds": number(seconds.get(key)), "consume_rate": number(rate.get(key)),
        })  # fmt: skip
    out = []
    for key, value in sorted(status.items()):
        labels = dict(key)
        parts = partitions.get((labels["service"], labels["topic"]), [])
        out.append({
            "service": labels["service"], "topic": labels["topic"],
            "status": STATUS_NAMES[min(max(int(value), 0), len(STATUS_NAMES) - 1)],
            "lag": sum(p["lag"] for p in parts),
            "lag_seconds": max((p["lag_seconds"] or 0.0 for p in parts), default=0.0),
            "time_to_data_loss_seconds": number(loss.get(key)), "partitions": parts,
        })  # fmt: skip
    return sorted(out, key=lambda c: (-STATUS_NAMES.index(c["status"]), c["service"]))


def _dlq(series: dict[str, list[Row]]) -> dict[str, Any]:
    depth = _latest(series["dlq_depth"])
    rates = _by_window(series["dlq_rate"])
    reasons: dict[tuple[str, str], float] = defaultdict(float)
    for _, labels, value in series["dlq_events"]:
        reasons[(labels["topic"], labels["reason"])] += value
    return {
        "depth": [{"topic": dict(key)["topic"], "depth": int(value)}
                  for key, value in sorted(depth.items())],
        "rate": number(rates[-1][1]) if rates else 0.0,
        "series": [{"t": iso(start), "value": int(value)}
                   for start, value in _by_window(series["dlq_events"])],
        "by_reason": [{"topic": topic, "reason": reason, "events": int(count)}
                      for (topic, reason), count in sorted(reasons.items(), key=lambda kv: -kv[1])],
    }  # fmt: skip
