"""Hostile producers: ``python -m benchmarks.hostile [--code DIR] [sizes]``.

Replays three producer bugs (issue 17) against a local stack, each on a new broker and a
new database:

* ``series`` — queue-metrics snapshots, each of a new service/topic/partition, spread over
  three minutes (the early ones stop reporting: STOP), plus DLQ events whose reasons carry
  ids and timestamps;
* ``trades`` — trades that are created and never complete;
* ``hot`` — events of 5 KB, all on one trade id.

For each, the ingestion and the metrics flow run to the end of the topics (``RTTM_TAIL=0``),
the metrics flow with a recovery store and a snapshot every 5 s, as in production; the
table gives the metrics flow's peak RSS and the most rows it wrote for one window, then
``rttm serve`` is started and the size and time of ``/api/status``, ``/api/alerts``,
``/metrics`` and ``/api/trace/HOT`` are measured, then ten heavy requests at once while a
``/healthz`` is timed, with the server's peak RSS.

``--code DIR`` runs the flows and the server from another checkout (``git worktree add DIR
COMMIT``), so the same harness measures the code before a change. Writes
``results/hostile-<label>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from bytewax.recovery import init_db_dir

from benchmarks import cpu
from benchmarks.harness import RESULTS, fresh_database, timed
from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from support.floods import HOT, hot_trade, series_flood, trade_flood
from support.simulated import kafka_messages
from support.workload import produce_stream

REPO = Path(__file__).resolve().parent.parent
#: Requests made at once in the concurrency probe.
CONCURRENT = 10
#: Seconds between the metrics flow's recovery snapshots.
SNAPSHOT_S = 5


@dataclass
class Response:
    """One API request: status, bytes and seconds (status 0: no answer in time)."""

    path: str
    status: int
    size: int
    seconds: float


@dataclass
class Scenario:
    """What one producer bug cost."""

    name: str
    messages: int
    flow_peak_mb: float = 0.0
    ingest_peak_mb: float = 0.0
    rows_per_window: int = 0
    responses: list[Response] = field(default_factory=list)
    healthz_under_load: Response | None = None
    server_peak_mb: float = 0.0


def main() -> None:
    """Run the scenarios (see the module docstring) and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout to run (default: this)")
    parser.add_argument("--label", default="after", help="name of this run in the results")
    parser.add_argument("--partitions", type=int, default=100_000)
    parser.add_argument("--reasons", type=int, default=20_000)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--hot", type=int, default=20_000, help="events on the hot trade")
    parser.add_argument("--only", default="series,trades,hot", help="scenarios to run")
    args = parser.parse_args()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    floods = {
        "series": lambda: series_flood(args.partitions, args.reasons, start),
        "trades": lambda: trade_flood(args.trades, start),
        "hot": lambda: hot_trade(args.hot, start),
    }
    results: list[Scenario] = []
    with tempfile.TemporaryDirectory(prefix="rttm-hostile-") as tmp:
        local = stack.up(Path(tmp), kafka_port=0, postgres_port=0)
        try:
            admin = local.postgres.url("postgres") if local.postgres else ""
            for name in args.only.split(","):
                results.append(run(Path(tmp), admin, name, floods[name], args.code))
                _say(f"{name}: {results[-1]}")
        finally:
            stack.down(Path(tmp), purge=True)  # a temporary stack: its data too
    report(results, args.label)


def run(tmp: Path, admin: str, name: str, flood: object, code: Path) -> Scenario:
    """Produce one flood to a new broker, run both flows, then probe ``rttm serve``."""
    broker = start_broker(tmp / f"broker-{name}", free_port())
    try:
        kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
        kafka_topics.create_topics(kafka)
        sent = produce_stream(kafka.brokers, kafka_messages(flood()))  # type: ignore[operator]
        _say(f"{name}: produced {sent:,} messages")
        url = fresh_database(admin)
        env = {
            **os.environ,
            "RTTM_KAFKA_BROKERS": kafka.brokers,
            "RTTM_DATABASE_URL": url,
            "RTTM_TAIL": "0",
            "PYTHONPATH": str(code),
        }
        scenario = Scenario(name, sent)
        _, scenario.ingest_peak_mb, _ = _flow(code, "dataflows.rttm", env)
        recovery = tmp / f"recovery-{name}"
        recovery.mkdir()
        init_db_dir(recovery, 1)
        _, scenario.flow_peak_mb, _ = _flow(
            code, "dataflows.metrics", env, "-r", str(recovery), "-s", str(SNAPSHOT_S), "-b", "0"
        )
        scenario.rows_per_window = rows_per_window(url)
        probe_server(code, env, scenario)
        return scenario
    finally:
        broker.stop()


def _flow(code: Path, module: str, env: dict[str, str], *args: str) -> tuple[float, float, float]:
    """Run a flow of ``code`` to the end: seconds, peak RSS (MB), CPU seconds."""
    return timed([sys.executable, "-m", "bytewax.run", module, *args], env, cwd=code)


def rows_per_window(url: str) -> int:
    """The most metric rows written for one window."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM rttm_metrics"
            " GROUP BY window_start) w"
        ).fetchone()
    return int(row[0]) if row else 0


def fetch(base: str, path: str, timeout: float = 120.0) -> Response:
    """GET ``path``: status, size and seconds, whatever the status."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as answer:  # noqa: S310
            body = answer.read()
            status = answer.status
    except urllib.error.HTTPError as refused:
        body, status = refused.read(), refused.code
    except OSError:
        body, status = b"", 0
    return Response(path, status, len(body), time.perf_counter() - started)


def probe_server(code: Path, env: dict[str, str], scenario: Scenario) -> None:
    """Start ``rttm serve`` and measure its answers, alone and under ten heavy requests."""
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "rttm", "serve", "--port", str(port), *_writer_role(code)],
        env=env,
        cwd=code,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while fetch(base, "/healthz", 2).status != 200:
            if time.monotonic() > deadline:
                msg = "rttm serve did not start"
                raise RuntimeError(msg)
            time.sleep(0.2)
        for path in ("/api/status", "/api/alerts", "/metrics", f"/api/trace/{HOT}"):
            scenario.responses.append(fetch(base, path))
        heavy = "/api/status" if scenario.name != "hot" else f"/api/trace/{HOT}"
        threads = [threading.Thread(target=fetch, args=(base, heavy)) for _ in range(CONCURRENT)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        scenario.healthz_under_load = fetch(base, "/healthz", 60)
        for thread in threads:
            thread.join()
        scenario.server_peak_mb = cpu.peak_rss_mb(server.pid) or 0.0
    finally:
        server.terminate()
        server.wait(timeout=30)


def _writer_role(code: Path) -> list[str]:
    """The harness's database role is the owner: say so to a ``rttm serve`` that asks."""
    source = code / "rttm" / "cli" / "serve_commands.py"
    return ["--allow-writer-role"] if "--allow-writer-role" in source.read_text() else []


def report(results: list[Scenario], label: str) -> None:
    """Print the table and write JSON."""
    print(
        f"\n{'scenario':<8} {'messages':>10} {'flow MB':>8} {'rows/window':>12} "
        f"{'server MB':>9}  responses (status, bytes, seconds)"
    )
    for s in results:
        answers = "; ".join(
            f"{r.path} {r.status} {_bytes(r.size)} {r.seconds:.2f}s" for r in s.responses
        )
        health = s.healthz_under_load
        under = f"; /healthz under load {health.status} {health.seconds:.2f}s" if health else ""
        print(
            f"{s.name:<8} {s.messages:>10,} {s.flow_peak_mb:>8.0f} {s.rows_per_window:>12,} "
            f"{s.server_peak_mb:>9.0f}  {answers}{under}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"hostile-{label}.json"
    out.write_text(json.dumps([asdict(s) for s in results], indent=2) + "\n")
    _say(f"wrote {out}")


def _bytes(size: int) -> str:
    return f"{size / 1e6:.1f}MB" if size >= 100_000 else f"{size / 1e3:.1f}kB"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
