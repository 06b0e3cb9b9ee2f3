"""``rttm run`` as an operator uses it, and a flow's cluster as it really behaves.

The supervisor runs real children against the test's broker and PostgreSQL: a child killed
with SIGKILL comes back, a flow's cluster is restarted as a whole and its tables end exact,
SIGTERM leaves no process behind, and with ``RTTM_LOG_FORMAT=json`` every line parses.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.recovery import init_db_dir

from rttm.cli.ingest_commands import LAG_SERVICE_NAME
from rttm.core.config import KafkaSettings
from rttm.stack.processes import free_port, port_is_free
from support import workload
from tests.ingest_helpers import REPO, assert_complete, counts, create_topics, flow_env
from tests.processes import BYTEWAX_RUN, RTTM, ready, start, wait_for

pytestmark = pytest.mark.integration


def listen_ports(count: int) -> int:
    """The first of ``count`` free consecutive ports below the kernel's ephemeral range.

    A cluster restarted by ``rttm run`` listens on the same ports again; a port of the
    ephemeral range may meanwhile be the local end of another test's client connection,
    and then cannot be listened on (as 2101, the default, never is).
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        first = random.randrange(10_000, max(10_001, low - count))
        if all(port_is_free(first + i) for i in range(count)):
            return first


class Supervised:
    """A running ``rttm run``, its output collected line by line as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*RTTM, "run", "--allow-writer-role", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        """Every line as the JSON object it must be."""
        return [json.loads(line) for line in list(self.lines)]

    def own(self, pattern: str) -> list[re.Match[str]]:
        """The supervisor's own messages matching ``pattern`` (JSON logs)."""
        found = (re.search(pattern, r["message"]) for r in self.records() if "process" not in r)
        return [match for match in found if match]

    def pids(self) -> dict[str, int]:
        """Each child's latest pid, from the supervisor's ``started`` lines."""
        pids: dict[str, int] = {}
        for match in self.own(r"^started (.*?)(?: \(restart \d+\))?$"):
            for name, pid in re.findall(r"([\w-]+) pid (\d+)", match[1]):
                pids[name] = int(pid)
        return pids

    def wait(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """``wait_for``, failing with the latest output: what the supervisor was doing."""
        try:
            wait_for(condition, timeout)
        except AssertionError:
            raise AssertionError(
                "\n".join(["condition not met in time; latest output:", *self.lines[-30:]])
            ) from None

    def stop(self) -> int:
        """SIGTERM to the supervisor alone, as systemd (KillMode=mixed) sends it."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=90)
        self._reader.join(timeout=10)
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def forget_own_lag_reports(url: str) -> None:
    """Delete the queue metrics RTTM's ingestion published about itself (not the workload's)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM rttm_queue_metrics WHERE service_name = %s", [LAG_SERVICE_NAME])


def run_env(kafka: KafkaSettings, url: str) -> dict[str, str]:
    return flow_env(kafka, url, RTTM_TAIL="1", RTTM_LOG_FORMAT="json")


def test_rttm_run_restarts_a_killed_child_then_stops_every_child_in_order_on_sigterm(
    kafka: KafkaSettings, migrated_db: str
) -> None:
    create_topics(kafka)
    first = workload.build(5_000, seed=8)
    workload.produce(kafka.brokers, first)
    first_port = free_port()
    while not (port_is_free(first_port + 1) and port_is_free(first_port + 2)):
        first_port = free_port()
    ports = [first_port + i for i in range(3)]  # ingest, metrics, then the lag exporter
    web = free_port()
    # A cluster place in the supervisor's environment is not its children's.
    env = {
        **run_env(kafka, migrated_db),
        "BYTEWAX_PROCESS_ID": "1",
        "BYTEWAX_ADDRESSES": "127.0.0.1:1;127.0.0.1:2",
        "RTTM_LAG_GROUPS": "settlement=settlement-engine",  # runs the lag exporter too
    }
    run = Supervised(
        ["--metrics-port", str(ports[0]), "--port", str(web), "--cluster-port", str(free_port())],
        env,
    )
    try:
        wait_for(lambda: set(run.pids()) == {"lag-exporter", "ingest", "metrics", "serve"})
        for port in (*ports, web):
            wait_for(ready(port))
        before = run.pids()
        killed = before["ingest"]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: run.pids()["ingest"] != killed)
        assert {k: v for k, v in run.pids().items() if k != "ingest"} == {
            k: v for k, v in before.items() if k != "ingest"
        }  # only the ingestion was restarted
        assert run.own(
            r"^ingest exited \(signal SIGKILL\) after [\d.]+ s; restarting ingest "
            r"in 1 s \(restart 1\)$"
        )
        second = workload.build(5_000, seed=9)
        workload.produce(kafka.brokers, second)
        want = first.distinct["rttm_trade_events"] + second.distinct["rttm_trade_events"]
        wait_for(lambda: counts(migrated_db)["rttm_trade_events"] == want)
        children = run.pids()
        assert all(alive(pid) for pid in children.values())
        status = run.stop()
    finally:
        run.kill()
    assert status == 0, run.lines[-20:]
    assert not [name for name, pid in children.items() if alive(pid)]
    stopped = [m[1] for m in run.own(r"^([\w-]+) stopped$")]
    assert stopped == ["lag-exporter", "ingest", "metrics", "serve"]
    assert run.own(r"^every child stopped$")
    forget_own_lag_reports(migrated_db)
    assert_complete(migrated_db, first, second)
    records = run.records()  # every line is a JSON object, the children's included
    assert {r["process"] for r in records if "process" in r} == {
        "lag-exporter",
        "ingest",
        "metrics",
        "serve",
    }
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert not [r for r in records if r["logger"] == "rttm.child"], "a child wrote plain text"


def test_rttm_run_restarts_a_flow_cluster_as_a_whole_and_the_tables_end_exact(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    create_topics(kafka)
    before = workload.build(150_000, seed=10)
    workload.produce(kafka.brokers, before)
    args = [
        "--ingest",
        "2",
        "--metrics",
        "0",
        "--no-serve",
        "--recovery-dir",
        str(tmp_path / "rec"),
        "--cluster-port",
        str(listen_ports(2)),
    ]
    run = Supervised(args, {**run_env(kafka, migrated_db), "RTTM_SHARDS": "2"})
    try:
        wait_for(lambda: counts(migrated_db)["rttm_trade_events"] > 0)
        killed = run.pids()
        os.kill(killed["ingest-1"], signal.SIGKILL)
        run.wait(lambda: run.own(r"\(restart 1\)$") != [] and len(run.own("^started")) == 2)
        restart = run.own(r"^ingest-1 exited \(signal SIGKILL\).*; restarting ingest in 1 s")
        assert restart, run.lines[-20:]
        assert not alive(killed["ingest-0"])  # its survivor was ended, then both restarted
        during = workload.build(20_000, seed=11)
        workload.produce(kafka.brokers, during)
        want = before.distinct["rttm_trade_events"] + during.distinct["rttm_trade_events"]
        wait_for(lambda: counts(migrated_db)["rttm_trade_events"] == want, timeout=120)
        assert run.stop() == 0, run.lines[-20:]
    finally:
        run.kill()
    forget_own_lag_reports(migrated_db)
    assert_complete(migrated_db, before, during)
    stores = sorted(p.relative_to(tmp_path) for p in (tmp_path / "rec").rglob("part-*"))
    assert stores == [
        Path("rec/ingest/process-0/part-0.sqlite3"),
        Path("rec/ingest/process-1/part-1.sqlite3"),
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {},
            "rttm run needs RTTM_KAFKA_BROKERS and RTTM_DATABASE_URL: it runs against your "
            "servers and never starts a local stack (for one: `rttm up`, or `rttm demo`)",
        ),
        (
            {
                "RTTM_KAFKA_BROKERS": "127.0.0.1:1",
                "RTTM_DATABASE_URL": "postgresql://h/d",
                "RTTM_TAIL": "0",
            },
            "RTTM_TAIL=0 makes each flow stop at the end of its partitions, and rttm run would "
            "restart it for ever: unset it",
        ),
        (
            {
                "RTTM_KAFKA_BROKERS": "127.0.0.1:1",
                "RTTM_DATABASE_URL": "postgresql://h/d",
                "RTTM_ALERT_WEBHOOK_URL": "hooks.example/rttm",
            },
            "RTTM_ALERT_WEBHOOK_URL: 'hooks.example/rttm' is not a URL: write it as"
            " http://HOST:PORT",
        ),
    ],
    ids=["no-servers", "bounded-flows", "bad-receiver"],
)
def test_rttm_run_refuses_what_it_cannot_supervise_in_one_line(
    tmp_path: Path, settings: dict[str, str], expected: str
) -> None:
    assert run_refusal(tmp_path, settings, []) == expected


SERVERS = {"RTTM_KAFKA_BROKERS": "127.0.0.1:1", "RTTM_DATABASE_URL": "postgresql://h/d"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--metrics-port", "65535"],
            "--metrics-port: the ports 65535 to 65536 are not all within 1 to 65535",
        ),
        (["--port", "0"], "--port: the ports 0 to 0 are not all within 1 to 65535"),
        (
            ["--ingest", "2", "--cluster-port", "9000", "--metrics-port", "9001"],
            "port 9001 is both --cluster-port's and --metrics-port's: move one",
        ),
        (["--metrics-port", "8764"], "port 8765 is both --metrics-port's and --port's: move one"),
        (
            ["--ingest", "0", "--metrics", "0", "--no-serve"],
            "nothing to run: --ingest 0, --metrics 0 and --no-serve",
        ),
    ],
)
def test_rttm_run_refuses_ports_that_cannot_work_before_starting_anything(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    assert run_refusal(tmp_path, SERVERS, args) == expected


def test_rttm_run_refuses_a_recovery_store_made_for_another_process_count(tmp_path: Path) -> None:
    for index in range(2):
        made = tmp_path / "made"
        made.mkdir(exist_ok=True)
        (tmp_path / f"rec/ingest/process-{index}").mkdir(parents=True)
    init_db_dir(made, 2)  # type: ignore[no-untyped-call]
    for index in range(2):
        (made / f"part-{index}.sqlite3").rename(
            tmp_path / f"rec/ingest/process-{index}/part-{index}.sqlite3"
        )
    args = ["--ingest", "3", "--recovery-dir", str(tmp_path / "rec")]
    assert run_refusal(tmp_path, SERVERS, args) == (
        f"{tmp_path}/rec/ingest holds process-0, process-1, not the store of 3 process(es) "
        "(process-<i>/part-<i>.sqlite3 for each): keep the process count it was made for, or "
        "use a new --recovery-dir"
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"RTTM_LAG_GROUPS": "settlement,=risk"}, "RTTM_LAG_GROUPS '=risk': expected GROUP or"),
        ({"RTTM_LAG_GROUP_REGEX": "orders-("}, "RTTM_LAG_GROUP_REGEX 'orders-(': missing )"),
    ],
)
def test_rttm_run_refuses_lag_groups_the_exporter_would_refuse(
    tmp_path: Path, settings: dict[str, str], expected: str
) -> None:
    assert run_refusal(tmp_path, {**SERVERS, **settings}, []).startswith(expected)


def run_refusal(state: Path, settings: dict[str, str], args: list[str]) -> str:
    """``rttm run ARGS`` must exit 1 at once with one line: what it says after ``error:``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTTM_")}
    env.update(settings, RTTM_STATE_DIR=str(state))  # a local stack there would be ignored
    result = subprocess.run(
        [*RTTM, "run", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    [line] = result.stderr.splitlines()
    assert line.startswith("rttm: error: ")
    return line.removeprefix("rttm: error: ")


# -- a flow's cluster: peers and addresses ------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [*RTTM, "ingest", "--peer-timeout", "2"],
        [*BYTEWAX_RUN, "dataflows.rttm"],
        [*BYTEWAX_RUN, "dataflows.metrics"],
    ],
    ids=["rttm-ingest", "bytewax-run-rttm", "bytewax-run-metrics"],
)
def test_a_missing_peer_ends_the_wait_with_one_line(
    kafka: KafkaSettings, migrated_db: str, command: list[str]
) -> None:
    create_topics(kafka)
    missing, own = free_port(), free_port()
    began = time.monotonic()
    addresses = f"127.0.0.1:{missing};127.0.0.1:{own}"
    env = flow_env(kafka, migrated_db, RTTM_TAIL="1", RTTM_PEER_TIMEOUT="2")
    process = start([*command, "-i", "1", "-a", addresses], env)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err[-2000:]
    assert time.monotonic() - began < 20
    assert err.strip().splitlines()[-1] == (
        f"rttm: error: the cluster did not form within 2 s: process 1 (127.0.0.1:{own}) "
        f"waited for 127.0.0.1:{missing}; start every process with the same -a list, and "
        "check each can reach the others"
    )
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        (
            "127.0.0.1:{port};192.0.2.7:2101",
            "-a entry 1 (192.0.2.7:2101) is not an address of this host: each process listens "
            "on its own entry as written, so use an address of its own interfaces (NAT or a "
            "mapped port cannot be bound)",
        ),
        ("127.0.0.1:{port}", "-i 1 is not an index of the 1 addresses in -a"),
        (
            "127.0.0.1;127.0.0.1:{port}",
            "-a entry '127.0.0.1': expected HOST:PORT, the port from 1 to 65535",
        ),
    ],
    ids=["not-own-interface", "id-out-of-range", "no-port"],
)
def test_a_cluster_address_that_cannot_work_is_refused_in_one_line(
    addresses: str, expected: str
) -> None:
    command = [*RTTM, "ingest", "-i", "1", "-a", addresses.format(port=free_port())]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"rttm: error: {expected}"]


def test_a_cluster_sharing_one_recovery_directory_resumes_exact_after_a_kill(
    kafka: KafkaSettings, migrated_db: str, tmp_path: Path
) -> None:
    """The shared-storage layout: every process sees every part (docs/scaling.md)."""
    create_topics(kafka)
    before = workload.build(150_000, seed=12)
    workload.produce(kafka.brokers, before)
    shared = tmp_path / "shared"
    shared.mkdir()
    init_db_dir(shared, 2)  # type: ignore[no-untyped-call]
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    env = flow_env(kafka, migrated_db, RTTM_TAIL="1")

    def cluster() -> list[subprocess.Popen[str]]:
        return [
            start(
                [
                    *RTTM,
                    "ingest",
                    "-i",
                    str(i),
                    "-a",
                    addresses,
                    "--recovery-dir",
                    str(shared),
                    "--snapshot-interval",
                    "1",
                    "--lag-interval",
                    "0",
                ],
                env,
            )
            for i in range(2)
        ]

    first = cluster()
    wait_for(lambda: counts(migrated_db)["rttm_trade_events"] > 0)
    first[1].send_signal(signal.SIGKILL)
    _, err = first[0].communicate(timeout=30)  # the survivor ends by itself, in one line
    first[1].communicate(timeout=30)
    assert first[0].returncode == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("rttm: error: another process of the cluster ended, so this one stops too")
    ), err[-2000:]
    during = workload.build(20_000, seed=13)
    workload.produce(kafka.brokers, during)
    second = cluster()
    want = before.distinct["rttm_trade_events"] + during.distinct["rttm_trade_events"]
    try:
        wait_for(lambda: counts(migrated_db)["rttm_trade_events"] == want, timeout=120)
    finally:
        for process in second:
            process.send_signal(signal.SIGTERM)
        for process in second:
            process.communicate(timeout=60)
    assert [process.returncode for process in second] == [0, 0]
    assert_complete(migrated_db, before, during)
