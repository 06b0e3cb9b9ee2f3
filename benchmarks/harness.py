"""What the end-to-end harnesses share: a fresh database per timed run, timing a command,
checking what a run stored, and the result types the charts draw.

``e2e``, ``scaling``, ``cluster``, ``catchup``, ``convergence``, ``hostile`` and
``metrics_e2e`` import it, and no harness imports another; ``charts`` draws its ``Result``
(``e2e``) and ``Point`` (``scaling``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks import cpu, freshness
from rttm.core.db import prepare
from rttm.core.registry import INGESTED_AT_COLUMN, REJECTS_TABLE, all_tables
from support import workload

RESULTS = Path(__file__).parent / "results"
#: The simulated platform's trade rate in the metrics harnesses (about 1,800 events/s).
TRADES_PER_S = 300


@dataclass
class Run:
    """One contender, timed ``len(seconds)`` times on the same input.

    A contender's rate is its median run; a limit's is its best run (what the machine
    allows at most).
    """

    name: str
    messages: int
    seconds: list[float] = field(default_factory=list)
    steady_seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    limit: bool = False
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(
        self,
        seconds: float,
        rss_mb: float | None = None,
        steady: float | None = None,
        cpu: dict[str, float] | None = None,
    ) -> None:
        """Record one timed run (``cpu``: CPU seconds per process, e.g. client, postgres)."""
        self.seconds.append(seconds)
        for name, spent in (cpu or {}).items():
            self.cpu.setdefault(name, []).append(spent)
        if steady:
            self.steady_seconds.append(steady)
        if rss_mb is not None:
            self.peak_rss_mb = max(self.peak_rss_mb or 0.0, rss_mb)

    def _typical(self, samples: list[float]) -> float:
        return min(samples) if self.limit else statistics.median(samples)

    @property
    def rate(self) -> float:
        """Messages per second, process start-up included."""
        return self.messages / self._typical(self.seconds)

    def usage_per_message(self, name: str) -> float | None:
        """``name``'s usage (CPU s, WAL bytes) per message in the median-time run."""
        spent = self.cpu.get(name)
        if not spent:
            return None
        runs = sorted(range(len(self.seconds)), key=self.seconds.__getitem__)
        return spent[runs[len(runs) // 2]] / self.messages

    @property
    def spread(self) -> tuple[float, float]:
        """Slowest and fastest rate over the runs."""
        return self.messages / max(self.seconds), self.messages / min(self.seconds)

    @property
    def steady_rate(self) -> float | None:
        """Messages per second from the first to the last committed write."""
        if not self.steady_seconds:
            return None
        return self.messages / self._typical(self.steady_seconds)


@dataclass
class Result:
    """Everything one run of ``e2e`` measured."""

    runs: list[Run]
    consume_limit: Run
    copy_limits: list[Run]
    freshness: freshness.Freshness | None
    rows_per_message: float  # rows written per message produced (duplicates write none)

    def of_copy_limit(self, r: Run) -> float:
        """``r``'s rows/s as a fraction of the fastest COPY's rows/s."""
        rows_per_s = r.rate if r.name.startswith("limit: COPY") else r.rate * self.rows_per_message
        return rows_per_s / self.copy_limit.rate

    @property
    def copy_limit(self) -> Run:
        """The fastest COPY run."""
        return max(self.copy_limits, key=lambda r: r.rate)


@dataclass
class Point:
    """One ingestion to completion: a point of ``scaling``'s curve."""

    events: int
    workers: int
    seconds: float
    steady_seconds: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        """Events per second, process start-up included."""
        return self.events / self.seconds

    @property
    def steady_rate(self) -> float:
        """Events per second from the first to the last write."""
        return self.events / self.steady_seconds if self.steady_seconds else self.rate


def fresh_database(admin_url: str) -> str:
    """A new migrated database, after a checkpoint; returns its URL."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # Each timed run starts with no dirty pages left by the one before.
        conn.execute("CHECKPOINT")
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
    return url


def timed(
    command: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[float, float, float]:
    """Run ``command``; returns its seconds, peak RSS in MB and CPU seconds (alone)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL)  # noqa: S603
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, cpu.peak_rss_mb(process.pid) or 0.0)
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        msg = f"{command} exited with {process.returncode}"
        raise RuntimeError(msg)
    return elapsed, peak, usage.ru_utime + usage.ru_stime


def write_window(url: str) -> float:
    """Seconds between the first and the last write transaction (``ingested_at``)."""
    parts = [
        sql.SQL("SELECT min({col}) AS lo, max({col}) AS hi FROM {table}").format(
            col=sql.Identifier("rejected_at" if table == REJECTS_TABLE else INGESTED_AT_COLUMN),
            table=sql.Identifier(table),
        )
        for table in all_tables()
    ]
    query = sql.SQL("SELECT extract(epoch FROM max(hi) - min(lo)) FROM ({}) AS t").format(
        sql.SQL(" UNION ALL ").join(parts)
    )
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def check(url: str, work: workload.Workload) -> None:
    """The database holds exactly the distinct events and one reject per malformed message."""
    with psycopg.connect(url) as conn:
        for table in all_tables():
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            got = row[0] if row else 0
            want = work.malformed if table == REJECTS_TABLE else work.distinct[table]
            if got != want:
                msg = f"{table}: {got} rows, expected {want}"
                raise AssertionError(msg)


def counted_events(url: str) -> tuple[int, int]:
    """(trade events counted in the windows, rows of rttm_metrics)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(value) FILTER (WHERE metric = 'events'), 0), count(*)"
            " FROM rttm_metrics"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
