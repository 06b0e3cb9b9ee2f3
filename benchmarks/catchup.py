"""Catching up a backlog on every partition at once: ``python -m benchmarks.catchup``.

What follows an outage (an hour of RTTM down): the five ``rttm.*`` topics hold a backlog
on every partition (messages are spread over the partitions at random, whatever their key:
keyed by service, error and log events would reach only a few; the count of partitions
with a backlog is reported), and a flow started with ``RTTM_TAIL=0`` reads it all at once,
then stops. For each partition layout (``--partitions 30,60``:
partitions over the five topics, so 6 or 12 per topic), each size (``--events
1000000,5000000,10000000``) and each flow (``--flows ingest,metrics``), a new broker gets
the backlog, streamed (nothing is held in memory):

- ``ingest``: the seeded workload of ``support.workload`` (80 % trade events, 10 %
  duplicates, 1 % malformed), read by ``python -m bytewax.run dataflows.rttm``; the rows
  per table and the rejects are checked against the workload;
- ``metrics``: the first ``size`` events of the simulator's default platform (300 trades/s,
  faults included), read by ``python -m bytewax.run dataflows.metrics``; the stored
  ``events`` metric must add up to the trade events produced.

Each run goes into a fresh database migrated by the code under test, and is timed with
its peak RSS (``benchmarks.harness.timed``). ``--baseline DIR`` (another checkout, e.g. a
``git worktree`` of an older commit) runs every flow with that code too (``cwd`` and
``PYTHONPATH`` set to DIR), on the same backlog, so the table compares both side by side.
Prints the table, writes ``results/catchup.json`` (after every run).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.harness import RESULTS, TRADES_PER_S, check, counted_events, timed
from rttm import stack
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.contracts import TradeEvent
from rttm.core.registry import TOPICS
from rttm.stack.broker import start_broker
from rttm.stack.processes import free_port
from support import simulated, workload

ROOT = Path(__file__).resolve().parent.parent
FLOWS = {"ingest": "dataflows.rttm", "metrics": "dataflows.metrics"}
TRADE_TOPIC = next(spec.name for spec in TOPICS if spec.struct is TradeEvent)
WORKLOAD_SEED = 11
#: librdkafka's partitioner that ignores the key: every partition gets a backlog.
SPREAD = "random"
SIMULATION_SEED = 1
#: Run in the code under test: a fresh database migrated by that code, and where the
#: packages were imported from (checked against the checkout's directory).
_PREPARE = (
    "import json, sys, dataflows, rttm\n"
    "try:\n"
    "    from benchmarks.harness import fresh_database\n"
    "except ImportError:  # a checkout from before benchmarks/harness.py\n"
    "    from benchmarks.e2e import fresh_database\n"
    "url = fresh_database(sys.argv[1])\n"
    "print(json.dumps([url, rttm.__file__, dataflows.__file__]))\n"
)

#: Checks the database a flow wrote into; raises if it is not what was produced.
Check = Callable[[str], None]


@dataclass(frozen=True)
class Code:
    """A checkout of the repository whose flows are run."""

    name: str  # "current" or "baseline"
    root: Path


@dataclass
class Run:
    """One flow catching up one backlog, to the end."""

    partitions: int  # over the five rttm.* topics
    size: int
    flow: str
    code: str
    events: int  # messages read (produced)
    loaded: int  # partitions holding part of the backlog (messages go by the registry's key)
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        """Events per wall-clock second, start-up included."""
        return self.events / self.seconds


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _numbers(parser: argparse.ArgumentParser, option: str, text: str) -> list[int]:
    """Comma-separated positive integers, or exit with a usage error naming ``option``."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        parser.error(f"{option}: expected positive integers separated by commas, got {text!r}")
    return numbers


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.catchup")
    topics = len(TOPICS)
    parser.add_argument(
        "--partitions", default="30,60", help=f"partitions over the {topics} rttm.* topics"
    )
    parser.add_argument("--events", default="1000000,5000000,10000000", help="backlog sizes")
    parser.add_argument("--flows", default="ingest,metrics", help="of: ingest, metrics")
    parser.add_argument(
        "--baseline", type=Path, metavar="DIR", help="another checkout, run on the same backlogs"
    )
    args = parser.parse_args()
    args.partitions = _numbers(parser, "--partitions", args.partitions)
    args.events = _numbers(parser, "--events", args.events)
    for count in args.partitions:
        if count % topics:
            parser.error(f"--partitions: {count} is not a multiple of the {topics} rttm.* topics")
    args.flows = [flow.strip() for flow in args.flows.split(",")]
    unknown = [flow for flow in args.flows if flow not in FLOWS]
    if unknown:
        parser.error(f"--flows: unknown flow {unknown[0]!r}; known: {', '.join(FLOWS)}")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        missing = [m for m in (FLOWS[f] for f in args.flows) if not _module_file(args.baseline, m)]
        if missing:
            parser.error(f"--baseline: {args.baseline} has no {missing[0]} (give a checkout)")
    return args


def _module_file(root: Path, module: str) -> bool:
    return (root / module.replace(".", "/")).with_suffix(".py").is_file()


def main() -> None:
    """Run every layout, size and flow (see the module docstring)."""
    args = _parse()
    codes = [Code("current", ROOT)]
    if args.baseline is not None:
        codes.insert(0, Code("baseline", args.baseline))  # before, then after
    runs: list[Run] = []

    def record(run: Run) -> None:
        runs.append(run)
        write_json(runs, args)  # a long session keeps what it measured if it stops

    with tempfile.TemporaryDirectory(prefix="rttm-catchup-") as tmp:
        local = stack.up(Path(tmp), with_broker=False, kafka_port=0, postgres_port=0)
        try:
            admin = local.postgres.url("postgres") if local.postgres else ""
            for partitions, size, flow in itertools.product(
                args.partitions, args.events, args.flows
            ):
                where = Path(tmp) / f"broker-{partitions}-{size}-{flow}"
                backlog(where, admin, (partitions, size, flow), codes, record)
        finally:
            stack.down(Path(tmp), purge=True)  # a temporary stack: its data too
    report(runs)


def backlog(
    where: Path,
    admin: str,
    case: tuple[int, int, str],
    codes: list[Code],
    record: Callable[[Run], None],
) -> None:
    """On a new broker (memory storage, stopped at the end), produce one backlog.

    ``case`` is (partitions, size, flow); each code's flow catches the backlog up, is
    checked and handed to ``record``.
    """
    partitions, size, flow = case
    broker = start_broker(where, free_port())
    try:
        kafka = KafkaSettings(brokers=broker.bootstrap, extra={})
        kafka_topics.create_topics(kafka, partitions=partitions // len(TOPICS))
        started = time.perf_counter()
        produced, verify = (produce_workload if flow == "ingest" else produce_simulated)(
            kafka.brokers, size
        )
        loaded = _loaded(kafka, partitions)
        _say(
            f"{partitions} partitions, {size:,} {flow}: produced {produced:,} messages in "
            f"{time.perf_counter() - started:.1f} s; backlog on {loaded} of {partitions} "
            "partitions"
        )
        for code in codes:
            url = migrated_database(code, admin)
            env = {
                **os.environ,
                "RTTM_KAFKA_BROKERS": kafka.brokers,
                "RTTM_DATABASE_URL": url,
                "RTTM_TAIL": "0",
                "PYTHONPATH": str(code.root),
            }
            with contextlib.chdir(code.root):  # `-m` puts the working directory first
                seconds, rss, cpu_seconds = timed(
                    [sys.executable, "-m", "bytewax.run", FLOWS[flow]], env
                )
            verify(url)
            run = Run(
                partitions, size, flow, code.name, produced, loaded, seconds, rss, cpu_seconds
            )
            _say(
                f"{partitions} partitions, {size:,} {flow}, {code.name}: {seconds:.1f} s, "
                f"{run.rate:,.0f} events/s, peak {rss:.0f} MB (checked)"
            )
            record(run)
    finally:
        broker.stop()


def _loaded(kafka: KafkaSettings, partitions: int) -> int:
    """How many of the topics' partitions hold messages (keyed by service: not all of them)."""
    ends = [end for topic in kafka_topics.describe_topics(kafka) for end in topic.end_offsets]
    if len(ends) != partitions:
        msg = f"the broker has {len(ends)} partitions over the rttm.* topics, {partitions} wanted"
        raise RuntimeError(msg)
    return sum(end > 0 for end in ends)


def migrated_database(code: Code, admin: str) -> str:
    """A fresh database migrated by ``code`` (its own migrations); returns its URL."""
    env = {**os.environ, "PYTHONPATH": str(code.root)}
    done = subprocess.run(  # noqa: S603 - our own interpreter and snippet
        [sys.executable, "-c", _PREPARE, admin],
        cwd=code.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        msg = (
            f"cannot prepare a database with the {code.name} code in {code.root}: "
            + (done.stderr.strip().splitlines() or ["no output"])[-1]
        )
        raise RuntimeError(msg)
    url, *modules = json.loads(done.stdout.splitlines()[-1])
    for module in modules:
        if not Path(module).resolve().is_relative_to(code.root):
            msg = f"the {code.name} code imported {module}, outside {code.root}"
            raise RuntimeError(msg)
    return str(url)


def produce_workload(brokers: str, size: int) -> tuple[int, Check]:
    """Stream the seeded workload; the check compares rows per table with its totals."""
    work = workload.Workload()
    sent = workload.produce_stream(
        brokers, workload.stream(size, WORKLOAD_SEED, work), partitioner=SPREAD
    )
    return sent, lambda url: check(url, work)


def produce_simulated(brokers: str, size: int) -> tuple[int, Check]:
    """Stream the first ``size`` simulated events; the check counts the trade events."""
    per_topic: Counter[str] = Counter()
    events = itertools.islice(simulated.stream(TRADES_PER_S, SIMULATION_SEED, trades=size), size)
    messages = _tally(simulated.kafka_messages(events), per_topic)
    sent = workload.produce_stream(brokers, messages, partitioner=SPREAD)
    expected = per_topic[TRADE_TOPIC]

    def verify(url: str) -> None:
        trades, _points = counted_events(url)
        if trades != expected:
            msg = f"metrics windows count {trades:,} trade events, {expected:,} were produced"
            raise AssertionError(msg)

    return sent, verify


def _tally(messages: Iterable[workload.Msg], per_topic: Counter[str]) -> Iterator[workload.Msg]:
    for message in messages:
        per_topic[message[0]] += 1
        yield message


def _ratios(runs: list[Run]) -> dict[int, float]:
    """For each current run with a baseline beside it: its events/s over the baseline's."""
    base = {(r.partitions, r.size, r.flow): r for r in runs if r.code == "baseline"}
    return {
        i: r.rate / base[(r.partitions, r.size, r.flow)].rate
        for i, r in enumerate(runs)
        if r.code == "current" and (r.partitions, r.size, r.flow) in base
    }


def write_json(runs: list[Run], args: argparse.Namespace) -> None:
    """Write every run so far."""
    ratios = _ratios(runs)
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "args": {**vars(args), "baseline": str(args.baseline) if args.baseline else None},
        "runs": [
            {**asdict(r), "rate": r.rate, "vs_baseline": ratios.get(i)} for i, r in enumerate(runs)
        ],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "catchup.json").write_text(json.dumps(out, indent=2) + "\n")


def report(runs: list[Run]) -> None:
    """Print the table."""
    ratios = _ratios(runs)
    print(
        f"\n{'layout':>12} {'size':>11} {'flow':<8} {'code':<9} {'seconds':>8} "
        f"{'events/s':>10} {'peak MB':>8} {'x baseline':>10}"
    )
    for i, r in enumerate(runs):
        layout = f"{r.partitions} ({r.partitions // len(TOPICS)}/topic)"
        ratio = f"{ratios[i]:.2f}" if i in ratios else "-"
        print(
            f"{layout:>12} {r.size:>11,} {r.flow:<8} {r.code:<9} {r.seconds:>8.1f} "
            f"{r.rate:>10,.0f} {r.peak_rss_mb:>8.0f} {ratio:>10}"
        )
    _say(
        "events/s: messages produced over wall clock from process start to exit; x baseline: "
        "events/s of the current code over the baseline's, on the same backlog"
    )
    _say(f"wrote {RESULTS / 'catchup.json'}")


if __name__ == "__main__":
    main()
