"""The chaos run (``python -m benchmarks.chaos``; ``tests/test_chaos.py`` runs a small one).

A paced producer sends a seeded workload (``support.workload``: duplicates and malformed
messages included) while the ingestion and the metrics flow follow the topics, each with a
Bytewax recovery store. Meanwhile, at seeded random moments, the harness kills both flows
with SIGKILL and restarts them, and stops PostgreSQL for 10-30 s and starts it again. The
producer keeps sending until the last action is done (at least ``events`` messages), so
every action meets a flow with work to do.

The report holds what happened, observed, not what was planned:

- each kill: the process was alive, had stored rows since it started, and died of the
  SIGKILL (not of anything else);
- each outage: how long PostgreSQL was really down; that the same flow process lived
  through it and stored rows again afterwards, without a restart; and how many times it
  said "database unavailable" and "database back" (once each is right);
- each table against the ground truth: no row missing, none doubled, none unexpected; and
  the rejects compared one by one (topic, raw key, raw value, reason) with the malformed
  messages sent;
- the metrics against the tables: once the windows have settled, ``rttm metrics verify``
  (:mod:`rttm.views.verify`) recounts every window and finds no difference.

``run`` returns the report; the benchmark prints it and exits 1 on any difference.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from bytewax.recovery import init_db_dir
from confluent_kafka import Producer
from psycopg import sql

from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.db import prepare
from rttm.core.registry import REJECTS_TABLE, all_tables
from rttm.stack.broker import start_broker
from rttm.stack.pgdata import purge_under
from rttm.stack.postgres import PostgresProcess, start_postgres
from rttm.stack.processes import free_port
from rttm.views import verify
from support import workload
from support.truth import Reject, expected_keys, expected_rejects, stored_keys, stored_rejects

CATCH_UP_S = 180.0
#: How long a restarted flow (or one after an outage) may take to store rows again.
PROGRESS_S = 60.0
#: The metrics flow's correction horizon here: windows settle, and are verified, soon.
CORRECTION = "10s"


@dataclass
class TableCheck:
    """How one table compares with the ground truth."""

    table: str
    expected: int
    stored: int
    missing: int = 0
    doubled: int = 0
    unexpected: int = 0

    @property
    def ok(self) -> bool:
        """No difference at all."""
        return self.expected == self.stored and not (
            self.missing or self.doubled or self.unexpected
        )


@dataclass(frozen=True)
class Kill:
    """One SIGKILL, as observed."""

    at_s: float
    pid: int
    alive: bool  # the process was running when the SIGKILL was sent
    rows_since_start: int  # rows stored since that process started
    returncode: int | None  # how it ended: -9 when the SIGKILL did it

    @property
    def ok(self) -> bool:
        """It hit a live flow that was storing rows, and the SIGKILL ended it."""
        return self.alive and self.rows_since_start > 0 and self.returncode == -signal.SIGKILL


@dataclass(frozen=True)
class Outage:
    """One PostgreSQL outage, as observed."""

    at_s: float
    down_s: float  # from refusing connections (probed; 0 if it never did) to accepting them
    survived: bool  # the flow process of its start lived through it, never restarted
    stored_after: bool  # ... and stored rows again afterwards
    said_unavailable: int  # "database unavailable" lines logged meanwhile
    said_back: int  # "database back" lines logged meanwhile

    @property
    def ok(self) -> bool:
        """The flow waited it out and said so once each way."""
        return (
            self.down_s > 0
            and self.survived
            and self.stored_after
            and self.said_unavailable == self.said_back == 1
        )


@dataclass
class ChaosReport:
    """What was done to the flow and what the database holds afterwards."""

    messages: int = 0
    kills: list[Kill] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    seconds: float = 0.0
    tables: list[TableCheck] = field(default_factory=list)
    odd_rejects: list[str] = field(default_factory=list)  # first few differences, described
    metrics: verify.Report | None = None  # rttm metrics verify, once the windows settled
    metrics_alive: bool = True  # the metrics flow lived through every outage

    @property
    def ok(self) -> bool:
        """Every action happened as it should; tables and metrics match the ground truth."""
        return (
            bool(self.tables)
            and all(check.ok for check in self.tables)
            and self.metrics is not None
            and self.metrics.compared > 0
            and self.metrics.ok
            and self.metrics_alive
            and all(kill.ok for kill in self.kills)
            and all(outage.ok for outage in self.outages)
        )

    def render(self) -> str:
        """The result as text tables."""
        lines = [f"{self.messages:,} messages in {self.seconds:.0f} s", ""]
        lines.append(f"{'action':<8} {'at':>6}  observed")
        actions = [
            (
                k.at_s,
                f"{'kill':<8} {k.at_s:>5.1f}s  pid {k.pid} "
                f"{'running' if k.alive else 'DEAD'}, {k.rows_since_start:,} rows stored since "
                f"its start; exit {k.returncode}" + ("" if k.ok else "  <- WRONG"),
            )
            for k in self.kills
        ] + [
            (
                o.at_s,
                f"{'outage':<8} {o.at_s:>5.1f}s  down {o.down_s:.1f} s; flow "
                f"{'lived through it' if o.survived else 'DIED'}, "
                f"{'stored again' if o.stored_after else 'stored NOTHING'} after; said "
                f"unavailable {o.said_unavailable}x, back {o.said_back}x"
                + ("" if o.ok else "  <- WRONG"),
            )
            for o in self.outages
        ]
        lines += [line for _, line in sorted(actions)]
        lines += [
            "",
            f"{'table':<22} {'expected':>9} {'stored':>9} {'missing':>8} {'doubled':>8} "
            f"{'unexpected':>10}",
        ]
        lines += [
            f"{c.table:<22} {c.expected:>9,} {c.stored:>9,} {c.missing:>8} {c.doubled:>8} "
            f"{c.unexpected:>10}"
            for c in self.tables
        ]
        lines += self.odd_rejects
        lines += ["", self._metrics_line()]
        lines.append("result: " + ("exact" if self.ok else "DIFFERENCES"))
        return "\n".join(lines)

    def _metrics_line(self) -> str:
        found = self.metrics
        if found is None:
            return "metrics: NOT VERIFIED (the windows did not settle)"
        differences = [
            f"  {d.metric} {dict(d.labels)} at {verify.iso_of(d.window_start)}: stored"
            f" {d.stored}, recounted {d.recounted}"
            for d in found.differences
        ]
        alive = "" if self.metrics_alive else "; the metrics flow DIED in an outage"
        return "\n".join(
            [
                f"metrics: {found.span.windows if found.span else 0} windows verified, "
                f"{found.compared:,} points compared, {sum(found.left_out.values())} events left"
                f" out, {len(found.differences)} differences{alive}",
                *differences[:10],
            ]
        )


class _Flow:
    """A flow as a subprocess that can be killed and restarted."""

    def __init__(
        self, env: dict[str, str], recovery: Path, log: Path, module: str = "dataflows.rttm"
    ) -> None:
        self._env, self._recovery, self.log, self._module = env, recovery, log, module
        self.process: subprocess.Popen[bytes] | None = None
        self.rows_at_start = 0

    def start(self, rows: int) -> None:
        self.rows_at_start = rows
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "bytewax.run",
                    self._module,
                    "-r",
                    str(self._recovery),
                    "-s",
                    "1",
                    "-b",
                    "0",
                ],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> int | None:
        """SIGKILL the process; its exit status."""
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


class _Producer(threading.Thread):
    """Sends the seeded workload at ``rate``: at least ``minimum`` messages, then until told.

    ``work`` keeps every message sent, which is the ground truth.
    """

    def __init__(self, brokers: str, seed: int, rate: float, minimum: int) -> None:
        super().__init__(daemon=True)
        self._brokers, self._seed, self._rate, self._minimum = brokers, seed, rate, minimum
        self.work = workload.Workload()
        self.enough = threading.Event()  # set when the harness needs no more
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = Producer({"bootstrap.servers": self._brokers, "linger.ms": 5})
            messages = workload.stream(10**9, self._seed, self.work)
            started = time.monotonic()
            sent = 0
            while sent < self._minimum or not self.enough.is_set():
                if sent % 200 == 0:
                    _sleep_until(started + sent / self._rate)
                message = next(messages)
                self.work.messages.append(message)
                workload.send(producer, *message)
                producer.poll(0)
                sent += 1
            if producer.flush(60):
                msg = "the producer could not deliver every message"
                raise RuntimeError(msg)
        except BaseException as exc:  # raised again by the harness
            self.error = exc


def _table_counts(url: str) -> Counter[str]:
    """Rows per table, counted by PostgreSQL (polled while the flow catches up)."""
    counts: Counter[str] = Counter()
    with psycopg.connect(url) as conn:
        for table in all_tables():
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def _rows(url: str) -> int:
    return sum(_table_counts(url).values())


def _settled_rows(url: str) -> int:
    """The row count once two reads 0.3 s apart agree (no commit still landing)."""
    rows = _rows(url)
    while True:
        time.sleep(0.3)
        again = _rows(url)
        if again == rows:
            return rows
        rows = again


def _refused(url: str) -> bool:
    """Whether PostgreSQL at ``url`` refuses connections now."""
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:
        return True
    return False


def _wait_for_rows(flow: _Flow, url: str, above: int) -> bool:
    """Whether the current flow process stores more than ``above`` rows in all, in time."""
    deadline = time.monotonic() + PROGRESS_S
    while time.monotonic() < deadline and flow.alive():
        try:
            if _rows(url) > above:
                return True
        except psycopg.OperationalError:
            pass  # the server is still starting
        time.sleep(0.2)
    return False


def run(
    events: int, kills: int, outages: int, seed: int, rate: float, outage_s: tuple[float, float]
) -> ChaosReport:
    """One chaos run on a private broker and PostgreSQL; see the module docstring."""
    rng = random.Random(seed)
    report = ChaosReport()
    with tempfile.TemporaryDirectory(prefix="rttm-chaos-") as tmp_dir:
        tmp = Path(tmp_dir)
        broker = start_broker(tmp / "broker", free_port())
        port = free_port()
        servers: list[PostgresProcess] = [start_postgres(tmp / "pg", port)]
        flow: _Flow | None = None
        metrics: _Flow | None = None
        try:
            kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
            kafka_topics.create_topics(kafka)
            url = servers[0].url()
            with psycopg.connect(url, autocommit=True) as conn:
                prepare(conn)
            for name in ("recovery", "metrics-recovery"):
                (tmp / name).mkdir()
                init_db_dir(tmp / name, 1)  # type: ignore[no-untyped-call]
            env = {
                **os.environ,
                "RTTM_KAFKA_BROKERS": kafka.brokers,
                "RTTM_DATABASE_URL": url,
                "RTTM_TAIL": "1",
                "RTTM_METRICS_CORRECTION": CORRECTION,
            }
            flow = _Flow(env, tmp / "recovery", tmp / "flow.log")
            metrics = _Flow(env, tmp / "metrics-recovery", tmp / "metrics.log", "dataflows.metrics")
            started = time.monotonic()
            flow.start(0)
            metrics.start(0)
            producer = _Producer(kafka.brokers, seed, rate, events)
            producer.start()
            plan = ["kill"] * kills + ["outage"] * outages
            rng.shuffle(plan)
            window = events / rate
            for n, action in enumerate(plan):
                # Each action waits until the flow of the moment has stored rows of its own.
                if not _wait_for_rows(flow, url, flow.rows_at_start):
                    msg = f"the flow stored nothing within {PROGRESS_S:.0f} s: {flow.tail()}"
                    raise RuntimeError(msg)
                planned = started + window * (n + rng.uniform(0.3, 0.9)) / len(plan)
                _sleep_until(max(planned, time.monotonic() + rng.uniform(0.5, 2.0)))
                at = time.monotonic() - started
                if action == "kill":
                    report.kills.append(_kill(flow, url, at))
                    metrics.kill()
                    metrics.start(0)
                else:
                    report.outages.append(
                        _outage(flow, servers, tmp / "pg", port, url, at, rng.uniform(*outage_s))
                    )
                    if not metrics.alive():
                        report.metrics_alive = False
                        metrics.start(0)
                print(f"chaos: {action} at {at:.1f} s", file=sys.stderr)
            producer.enough.set()
            producer.join()
            if producer.error is not None:
                raise producer.error
            work = producer.work
            truth = expected_keys(work.messages)
            rejects = expected_rejects(work.messages)
            want = Counter({table: len(keys) for table, keys in truth.items()})
            want[REJECTS_TABLE] = rejects.total()
            deadline = time.monotonic() + CATCH_UP_S
            while _table_counts(url) != want and time.monotonic() < deadline:
                if not flow.alive():
                    msg = f"the flow exited; its log: {flow.tail()}"
                    raise RuntimeError(msg)
                time.sleep(0.5)
            report.seconds = time.monotonic() - started
            report.messages = work.total
            flow.kill()
            report.tables, report.odd_rejects = _compare(url, truth, rejects)
            report.metrics = _settled_metrics(metrics, env)
        finally:
            for process in (flow, metrics):
                if process is not None and process.alive():
                    process.kill()
            servers[-1].stop()
            broker.stop()
            purge_under(tmp)  # as root the data lives under /var/lib/rttm-postgres
    return report


def _settled_metrics(metrics: _Flow, env: dict[str, str]) -> verify.Report | None:
    """Wait until every window with events has settled; then verify them and stop the flow.

    The flow follows the topics, so once they are read its windows close with the clock;
    a window is settled (cannot change any more) after lateness and horizon have passed.
    """
    with psycopg.connect(env["RTTM_DATABASE_URL"]) as conn:
        newest = conn.execute(
            "SELECT extract(epoch FROM max(event_time)) FROM rttm_trade_events"
        ).fetchone()
    if newest is None or newest[0] is None:
        return None  # no trade event stored: nothing to settle
    deadline = time.monotonic() + CATCH_UP_S
    while time.monotonic() < deadline:
        if not metrics.alive():
            msg = f"the metrics flow exited; its log: {metrics.tail()}"
            raise RuntimeError(msg)
        report = verify.run(env, since_s=86_400.0)
        if report.span is not None and report.span.end > float(newest[0]):
            metrics.kill()
            return report
        time.sleep(2.0)
    metrics.kill()
    return None


def _kill(flow: _Flow, url: str, at: float) -> Kill:
    """SIGKILL the running flow and start a new one; what was observed."""
    assert flow.process is not None
    pid, alive = flow.process.pid, flow.alive()
    rows = _rows(url) - flow.rows_at_start
    # A flow that had died already is reported with its own exit status, not as a kill.
    returncode = flow.kill() if alive else flow.process.returncode
    flow.start(_settled_rows(url))  # a commit sent before the kill may show a moment later
    return Kill(at, pid, alive, rows, returncode)


def _outage(
    flow: _Flow,
    servers: list[PostgresProcess],
    state: Path,
    port: int,
    url: str,
    at: float,
    down: float,
) -> Outage:
    """Stop PostgreSQL for ``down`` seconds; watch the flow wait it out."""
    assert flow.process is not None
    process = flow.process
    log_from = flow.log.stat().st_size
    servers[-1].stop()
    stopped = time.monotonic()
    was_down = _refused(url)  # observed, not assumed
    time.sleep(max(0.0, down - (time.monotonic() - stopped)))
    servers.append(start_postgres(state, port))
    down_s = time.monotonic() - stopped if was_down else 0.0
    rows_then = _rows(url)
    stored_after = _wait_for_rows(flow, url, rows_then)
    survived = process.poll() is None
    # "database back" follows the commit the rows showed by a moment: give it that moment.
    deadline = time.monotonic() + 5.0
    said = flow.log.read_bytes()[log_from:].decode(errors="replace")
    while stored_after and "database back" not in said and time.monotonic() < deadline:
        time.sleep(0.1)
        said = flow.log.read_bytes()[log_from:].decode(errors="replace")
    outage = Outage(
        at,
        down_s,
        survived,
        stored_after,
        said.count("database unavailable"),
        said.count("database back"),
    )
    if not survived:  # keep the run going, so the report shows everything
        flow.start(rows_then)
    return outage


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _compare(
    url: str, truth: dict[str, set[str]], rejects: Counter[Reject]
) -> tuple[list[TableCheck], list[str]]:
    """Each table against the truth; the rejects message by message."""
    stored = stored_keys(url)
    checks = []
    for table, keys in stored.items():
        expected = truth.get(table, set())
        distinct = set(keys)
        checks.append(
            TableCheck(
                table,
                len(expected),
                len(keys),
                missing=len(expected - distinct),
                doubled=len(keys) - len(distinct),
                unexpected=len(distinct - expected),
            )
        )
    kept = stored_rejects(url)
    missing, unexpected = rejects - kept, kept - rejects
    checks.append(
        TableCheck(
            REJECTS_TABLE,
            rejects.total(),
            kept.total(),
            missing=missing.total(),
            unexpected=unexpected.total(),
        )
    )
    odd = [f"reject missing: {r[0]} {r[2]!r:.80} ({r[3]})" for r in list(missing)[:5]]
    odd += [f"reject unexpected: {r[0]} {r[2]!r:.80} ({r[3]})" for r in list(unexpected)[:5]]
    return checks, odd
