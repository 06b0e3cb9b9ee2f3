"""Scaling curve: ``python -m benchmarks.scaling [--events 10000,100000,1000000,5000000]``.

For each workload size, on a new broker, RTTM ingests the seeded workload to completion
with 1 and with 2 workers, each into a fresh database (rows per table checked). For the
largest run with 1 worker it also cuts the write history (``ingested_at`` of every row)
into slices of equal row count: a flat rate per slice shows that the cost of a row does
not grow with the tables (day partitions and B-tree appends keep inserts O(1) per row, up
to the index's log factor). Prints a table, writes ``results/scaling.json`` and
``results/scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks import charts
from benchmarks.harness import RESULTS, Point, check, fresh_database, timed, write_window
from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.registry import INGESTED_AT_COLUMN, REJECTS_TABLE, all_tables
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from support import workload

SLICES = 10


def write_slices(url: str, slices: int = SLICES) -> list[tuple[int, float]]:
    """(rows written before the slice ends, rows/s within it) for equal-row slices."""
    parts = [
        sql.SQL("SELECT {} AS at FROM {}").format(
            sql.Identifier("rejected_at" if table == REJECTS_TABLE else INGESTED_AT_COLUMN),
            sql.Identifier(table),
        )
        for table in all_tables()
    ]
    query = sql.SQL(
        "SELECT extract(epoch FROM at), count(*) FROM ({}) AS t GROUP BY at ORDER BY at"
    ).format(sql.SQL(" UNION ALL ").join(parts))
    with psycopg.connect(url) as conn:
        commits = [(float(at), int(n)) for at, n in conn.execute(query).fetchall()]
    total = sum(n for _, n in commits)
    # A transaction's rows carry its start time, so a slice runs from the start of its first
    # transaction to the start of the next slice's first; the last transaction only ends one.
    out: list[tuple[int, float]] = []
    done, slice_rows, slice_start = 0, 0, commits[0][0]
    for at, n in commits:
        if done >= total * (len(out) + 1) / slices and at > slice_start:
            out.append((done, slice_rows / (at - slice_start)))
            slice_rows, slice_start = 0, at
        done += n
        slice_rows += n
    return out


def main() -> None:
    """Run the curve (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    parser.add_argument("--events", default="10000,100000,1000000,5000000")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    sizes = [int(n) for n in args.events.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    points: list[Point] = []
    slices: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="rttm-scaling-") as tmp:
        local = stack.up(Path(tmp), kafka_port=0, postgres_port=0)
        try:
            admin = local.postgres.url("postgres") if local.postgres else ""
            for size in sizes:
                broker = start_broker(Path(tmp) / f"broker-{size}", free_port())
                try:
                    kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
                    kafka_topics.create_topics(kafka)
                    work = workload.build(size)
                    started = time.perf_counter()
                    workload.produce(kafka.brokers, work)
                    print(
                        f"{size:,}: produced in {time.perf_counter() - started:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    env = {**os.environ, "RTTM_KAFKA_BROKERS": kafka.brokers, "RTTM_TAIL": "0"}
                    for count in workers:
                        url = fresh_database(admin)
                        seconds, rss, _cpu = timed(
                            [
                                sys.executable,
                                "-m",
                                "bytewax.run",
                                "dataflows.rttm",
                                "-w",
                                str(count),
                            ],
                            {**env, "RTTM_DATABASE_URL": url},
                        )
                        check(url, work)
                        points.append(Point(size, count, seconds, write_window(url), rss))
                        print(
                            f"{size:,} x {count} workers: {points[-1].rate:,.0f} events/s",
                            file=sys.stderr,
                            flush=True,
                        )
                        if size == max(sizes) and count == min(workers):
                            slices = write_slices(url)
                finally:
                    broker.stop()
        finally:
            stack.down(Path(tmp), purge=True)  # a temporary stack: its data too
    report(points, slices)


def report(points: list[Point], slices: list[tuple[int, float]]) -> None:
    """Print the tables, write JSON, draw the chart."""
    print(
        f"\n{'events':>10} {'workers':>8} {'seconds':>8} {'events/s':>10} {'steady/s':>10} "
        f"{'µs/event':>9} {'peak MB':>8}"
    )
    for p in points:
        per_event = 1e6 / p.steady_rate
        print(
            f"{p.events:>10,} {p.workers:>8} {p.seconds:>8.1f} {p.rate:>10,.0f} "
            f"{p.steady_rate:>10,.0f} {per_event:>9.2f} {p.peak_rss_mb:>8.0f}"
        )
    print(f"\nlargest run, 1 worker, in {len(slices)} slices of equal row count:")
    print(f"{'rows so far':>12} {'rows/s':>10}")
    for rows, rate in slices:
        print(f"{rows:>12,} {rate:>10,.0f}")
    RESULTS.mkdir(exist_ok=True)
    out = {
        "points": [{**asdict(p), "rate": p.rate, "steady_rate": p.steady_rate} for p in points],
        "slices": [{"rows_so_far": rows, "rows_per_s": rate} for rows, rate in slices],
    }
    (RESULTS / "scaling.json").write_text(json.dumps(out, indent=2) + "\n")
    charts.scaling(points, slices, RESULTS / "scaling.png")
    print(f"wrote {RESULTS / 'scaling.json'} and {RESULTS / 'scaling.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
