"""End-to-end ingestion benchmark: ``python -m benchmarks.e2e [--events N]``.

Starts a private broker and PostgreSQL (``rttm.stack``, durable settings),
pre-produces a seeded workload (``support.workload``: five topics, 10 % duplicates,
1 % malformed), then, in one run: measures the machine's limits (``benchmarks.limits``:
librdkafka reading the topics, PostgreSQL taking the same rows by ``COPY``); times, each
into a fresh database, RTTM with 1 and 2 workers (``python -m bytewax.run dataflows.rttm``,
``RTTM_TAIL=0``) and the two baselines of ``benchmarks.baselines``; and measures freshness
under a steady load (``benchmarks.freshness``). Checks every RTTM run against the ground
truth, prints a table, writes ``benchmarks/results/e2e.json`` and draws ``e2e.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import psycopg

from benchmarks import charts, cpu, freshness, limits
from benchmarks.harness import RESULTS, Result, Run, check, fresh_database, timed, write_window
from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.db import partitions
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from support import workload


class ServerUsage:
    """CPU seconds of the local PostgreSQL and broker, and WAL bytes, over a block of work."""

    def __init__(self, local: stack.LocalStack) -> None:
        self._pids = {
            "postgres": local.postgres.pid if local.postgres else 0,
            "broker": local.broker.pid if local.broker else 0,
        }
        self._admin = local.postgres.url("postgres") if local.postgres else ""
        self._start = self._now()
        self._lsn = self._wal_lsn()

    def _now(self) -> dict[str, float]:
        return {name: cpu.tree_seconds(pid) for name, pid in self._pids.items()}

    def _wal_lsn(self) -> str:
        with psycopg.connect(self._admin, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        return str(row[0]) if row else "0/0"

    def spent(self) -> dict[str, float]:
        """CPU seconds of each server, and ``wal`` bytes, since this object was made."""
        now = self._now()
        out = {name: now[name] - self._start[name] for name in now}
        with psycopg.connect(self._admin, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (self._lsn,)
            ).fetchone()
        out["wal"] = float(row[0]) if row else 0.0
        return out


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--batched",
        type=int,
        default=300_000,
        help="messages the executemany baseline ingests (rate is compared)",
    )
    parser.add_argument(
        "--per-row",
        type=int,
        default=20_000,
        help="messages the per-row baseline ingests (rate is compared)",
    )
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per contender and limit (median / best)"
    )
    parser.add_argument("--freshness-rate", type=int, default=20_000, help="events/s")
    parser.add_argument(
        "--freshness-seconds", type=float, default=30.0, help="steady-load duration (0: skip)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rttm-bench-") as tmp:
        local = stack.up(Path(tmp), kafka_port=0, postgres_port=0)
        try:
            result = bench(local, Path(tmp), args)
        finally:
            stack.down(Path(tmp), purge=True)  # a temporary stack: its data too
    report(result, args)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench(local: stack.LocalStack, tmp: Path, args: argparse.Namespace) -> Result:
    """Produce the workload, measure the limits, then time every contender."""
    kafka = KafkaSettings(brokers=local.kafka_brokers, extra={})
    kafka_topics.create_topics(kafka)
    work = workload.build(args.events)
    started = time.perf_counter()
    workload.produce(kafka.brokers, work)
    _say(
        f"produced {work.total:,} messages in {time.perf_counter() - started:.1f} s "
        f"({work.duplicates:,} duplicates, {work.malformed:,} malformed)"
    )
    consume_limit = Run("limit: raw consume", work.total, limit=True)
    for _ in range(args.repeat):
        count, seconds = limits.consume_rate(kafka.brokers)
        if count != work.total:
            msg = f"raw consumer read {count:,} messages, {work.total:,} were produced"
            raise AssertionError(msg)
        consume_limit.add(seconds)
    _say(f"{consume_limit.name}: {consume_limit.rate:,.0f} msg/s")
    admin = local.postgres.url("postgres") if local.postgres else ""
    base_env = {**os.environ, "RTTM_KAFKA_BROKERS": kafka.brokers, "RTTM_TAIL": "0"}
    runs, written = [], ""
    for workers in [int(w) for w in args.workers.split(",")]:
        run = Run(f"rttm -w {workers}", work.total)
        for _ in range(args.repeat):
            url = fresh_database(admin)
            servers = ServerUsage(local)
            seconds, rss, client = timed(
                [sys.executable, "-m", "bytewax.run", "dataflows.rttm", "-w", str(workers)],
                {**base_env, "RTTM_DATABASE_URL": url},
            )
            usage = {"client": client, **servers.spent()}  # before the queries below
            run.add(seconds, rss, write_window(url), usage)
            check(url, work)
            written = written or url
        runs.append(run)
        _say(f"{run.name}: {run.rate:,.0f} msg/s (median of {args.repeat})")
    copy_limits = copy_limit_runs(local, written, args.repeat)
    for kind, count in (
        ("batched", min(args.batched, work.total)),
        ("per-row", min(args.per_row, work.total)),
    ):
        run = Run(f"baseline {kind}", count)
        for _ in range(args.repeat):
            url = fresh_database(admin)
            servers = ServerUsage(local)
            seconds, rss, client = timed(
                [sys.executable, "-m", "benchmarks.baselines", kind, str(count)],
                {**base_env, "RTTM_DATABASE_URL": url},
            )
            run.add(seconds, rss, cpu={"client": client, **servers.spent()})
        runs.append(run)
        _say(f"{run.name}: {run.rate:,.0f} msg/s (median of {args.repeat})")
    fresh = None
    if args.freshness_seconds > 0:
        fresh = freshness_run(tmp, admin, args.freshness_rate, args.freshness_seconds)
    return Result(runs, consume_limit, copy_limits, fresh, copy_limits[0].messages / work.total)


def copy_limit_runs(local: stack.LocalStack, source_url: str, repeat: int) -> list[Run]:
    """PostgreSQL's COPY rate for the rows RTTM wrote: text and binary, 1 and 2 connections."""
    admin = local.postgres.url("postgres") if local.postgres else ""
    with psycopg.connect(source_url) as conn:
        days = [part.day for part in partitions.list_partitions(conn)]
    out = []
    for binary in (False, True):
        batches = limits.export_batches(source_url, binary=binary)
        for connections in (1, 2):
            run = Run(f"limit: COPY {'binary' if binary else 'text'} x{connections}", 0, limit=True)
            for _ in range(repeat):
                url = fresh_database(admin)
                with psycopg.connect(url, autocommit=True) as conn:
                    partitions.ensure_days(conn, days)
                servers = ServerUsage(local)
                run.messages, seconds = limits.copy_rate(url, batches, connections)
                usage = servers.spent()
                run.add(seconds, cpu={"postgres": usage["postgres"], "wal": usage["wal"]})
            out.append(run)
            _say(f"{run.name}: {run.rate:,.0f} rows/s (best of {repeat})")
    return out


def freshness_run(tmp: Path, admin: str, rate: int, seconds: float) -> freshness.Freshness:
    """Steady load on a new, empty broker (the workload's topics would be replayed first)."""
    broker = start_broker(tmp / "freshness-broker", free_port())
    try:
        kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
        kafka_topics.create_topics(kafka)
        result = freshness.measure(
            kafka.brokers, fresh_database(admin), rate, seconds, tmp / "freshness-flow.log"
        )
    finally:
        broker.stop()
    p50, p99 = result.percentile(50), result.percentile(99)
    _say(
        f"freshness at {result.achieved:,.0f} events/s: p50 {p50:.0f} ms, p99 {p99:.0f} ms "
        f"({result.probes} probes, {result.unseen} unseen)"
    )
    return result


def report(result: Result, args: argparse.Namespace) -> None:
    """Print the table, write JSON and draw the chart."""
    runs = result.runs
    by_name = {r.name: r for r in runs}
    batched, per_row = by_name["baseline batched"], by_name["baseline per-row"]
    print(
        f"\n{'run':<22} {'messages':>10} {'msg/s':>10} {'range':>17} {'steady/s':>10} "
        f"{'x batched':>10} {'x per-row':>10} {'of COPY':>8} {'peak MB':>8}"
    )
    for r in [result.consume_limit, *result.copy_limits, *runs]:
        steady = f"{r.steady_rate:,.0f}" if r.steady_rate else "-"
        low, high = r.spread
        rss = f"{r.peak_rss_mb:,.0f}" if r.peak_rss_mb else "-"
        print(
            f"{r.name:<22} {r.messages:>10,} {r.rate:>10,.0f} {low:>8,.0f}-{high:<8,.0f} "
            f"{steady:>10} {r.rate / batched.rate:>10.1f} {r.rate / per_row.rate:>10.1f} "
            f"{result.of_copy_limit(r):>8.0%} {rss:>8}"
        )
    print(
        f"\nper message, median-time run: CPU µs of {'client':>8} {'postgres':>9} {'broker':>7} "
        f"{'total':>7}; WAL bytes"
    )
    for r in [*result.copy_limits, *runs]:
        parts = [r.usage_per_message(name) for name in ("client", "postgres", "broker")]
        micros = [None if part is None else part * 1e6 for part in parts]
        total = sum(part or 0.0 for part in micros)
        cells = " ".join(
            f"{part:>{w}.1f}" if part is not None else f"{'-':>{w}}"
            for part, w in zip(micros, (8, 9, 7), strict=True)
        )
        wal = r.usage_per_message("wal")
        print(f"  {r.name:<37} {cells} {total:>7.1f}  {wal or 0:>6,.0f}")
    fresh = result.freshness
    if fresh is not None:
        print(
            f"\nfreshness (produce -> visible row), RTTM -w 1 following the topics at "
            f"{fresh.achieved:,.0f} events/s for {fresh.seconds:.0f} s: "
            f"p50 {fresh.percentile(50):.0f} ms, p99 {fresh.percentile(99):.0f} ms, "
            f"max {max(fresh.latencies_ms):.0f} ms over {fresh.probes:,} probes "
            f"({fresh.unseen} unseen), peak RSS {fresh.peak_rss_mb:.0f} MB"
        )
    _say(
        "msg/s: wall clock from process start to exit, median run (limits: best run); "
        "range: slowest-fastest run; steady/s: first to last write; x: ratio of msg/s to the "
        "baseline's; 'of COPY': rows written per second over the fastest COPY's rows/s"
    )
    RESULTS.mkdir(exist_ok=True)
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows_per_message": result.rows_per_message,
        "args": vars(args),
        "limits": [_run_json(r) for r in (result.consume_limit, *result.copy_limits)],
        "runs": [_run_json(r) for r in runs],
        "freshness": None
        if fresh is None
        else {
            "rate": fresh.rate,
            "achieved": fresh.achieved,
            "seconds": fresh.seconds,
            "probes": fresh.probes,
            "unseen": fresh.unseen,
            "peak_rss_mb": fresh.peak_rss_mb,
            "p50_ms": fresh.percentile(50),
            "p99_ms": fresh.percentile(99),
            "max_ms": max(fresh.latencies_ms),
        },
    }
    (RESULTS / "e2e.json").write_text(json.dumps(out, indent=2) + "\n")
    charts.e2e(result, RESULTS / "e2e.png")
    _say(f"wrote {RESULTS / 'e2e.json'} and {RESULTS / 'e2e.png'}")


def _run_json(r: Run) -> dict[str, object]:
    return {**asdict(r), "rate": r.rate, "steady_rate": r.steady_rate, "range": r.spread}


if __name__ == "__main__":
    main()
