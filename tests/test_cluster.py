"""A flow process's place in its cluster: options, environment, and the checks before Bytewax."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rttm.cli import run_flow
from rttm.core.errors import RttmError
from rttm.ops import cluster
from rttm.ops.cluster import Place
from rttm.stack.processes import free_port
from tests.ingest_helpers import REPO


def options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cluster.add_options(parser)
    return parser.parse_args(argv)


PORT_RULE = "expected HOST:PORT, the port from 1 to 65535"


def test_a_process_alone_has_no_place() -> None:
    assert cluster.place(options(), {}) is None


def test_the_options_win_over_the_environment() -> None:
    env = {"BYTEWAX_PROCESS_ID": "0", "BYTEWAX_ADDRESSES": "h0:1;h1:1;h2:1"}
    assert cluster.place(options("-i", "1", "-a", "a:2101; b:2101"), env) == Place(
        1, ("a:2101", "b:2101")
    )
    assert cluster.place(options(), env) == Place(0, ("h0:1", "h1:1", "h2:1"))
    where = cluster.place(options("-i", "2"), env)
    assert where is not None
    assert where.own_address == "h2:1"


def test_a_statefulset_pod_takes_its_ordinal_as_in_bytewax_run() -> None:
    env = {
        "BYTEWAX_POD_NAME": "rttm-ingest-2",
        "BYTEWAX_STATEFULSET_NAME": "rttm-ingest",
        "BYTEWAX_ADDRESSES": "a:1;b:1;c:1",
    }
    assert cluster.place(options(), env) == Place(2, ("a:1", "b:1", "c:1"))
    with pytest.raises(RttmError, match=r"^BYTEWAX_POD_NAME='x': expected a process index$"):
        cluster.place(options(), {**env, "BYTEWAX_POD_NAME": "rttm-ingest-x"})


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["-i", "0"], {}, "a cluster process needs both -i/--process-id and -a/--addresses"),
        (["-a", "a:1;b:1"], {}, "a cluster process needs both -i/--process-id and -a/--addresses"),
        (["-i", "2", "-a", "a:1;b:1"], {}, "-i 2 is not an index of the 2 addresses in -a"),
        (["-i", "-1", "-a", "a:1"], {}, "-i -1 is not an index of the 1 addresses in -a"),
        (["-i", "0", "-a", "a:1;b"], {}, f"-a entry 'b': {PORT_RULE}"),
        (["-i", "0", "-a", ":1"], {}, f"-a entry ':1': {PORT_RULE}"),
        (["-i", "0", "-a", "a:x"], {}, f"-a entry 'a:x': {PORT_RULE}"),
        (["-i", "0", "-a", "a:0"], {}, f"-a entry 'a:0': {PORT_RULE}"),
        (["-i", "0", "-a", "a:65536"], {}, f"-a entry 'a:65536': {PORT_RULE}"),
        (
            ["-i", "0", "-a", "a:65535;a:1;a:65535"],
            {},
            "-a lists an address twice: each process needs its own",
        ),
        (
            [],
            {"BYTEWAX_PROCESS_ID": "one", "BYTEWAX_ADDRESSES": "a:1"},
            "BYTEWAX_PROCESS_ID='one': expected a process index",
        ),
    ],
)
def test_a_place_that_cannot_work_is_one_line(
    argv: list[str], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(RttmError) as error:
        cluster.place(options(*argv), env)
    assert str(error.value) == expected


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, 120.0),
        ([], {"RTTM_PEER_TIMEOUT": "7.5"}, 7.5),
        (["--peer-timeout", "3"], {"RTTM_PEER_TIMEOUT": "7.5"}, 3.0),
    ],
)
def test_the_peer_timeout_comes_from_the_option_then_the_environment(
    argv: list[str], env: dict[str, str], expected: float
) -> None:
    assert cluster.peer_timeout(options(*argv), env) == expected


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--peer-timeout", "0"], {}),
        ([], {"RTTM_PEER_TIMEOUT": "soon"}),
        ([], {"RTTM_PEER_TIMEOUT": "-1"}),
    ],
)
def test_a_peer_timeout_that_is_not_a_positive_number_is_refused(
    argv: list[str], env: dict[str, str]
) -> None:
    with pytest.raises(RttmError, match=r"^--peer-timeout / RTTM_PEER_TIMEOUT must be a number"):
        cluster.peer_timeout(options(*argv), env)


def test_an_own_address_of_this_host_passes_and_a_taken_or_foreign_one_is_refused() -> None:
    port = free_port()
    cluster.check_own_address(Place(0, (f"127.0.0.1:{port}", "10.1.1.1:1")))
    with socket.create_server(("127.0.0.1", port)), pytest.raises(RttmError) as taken:
        cluster.check_own_address(Place(0, (f"127.0.0.1:{port}",)))
    assert str(taken.value) == (
        f"-a entry 0 (127.0.0.1:{port}) cannot be listened on: Address already in use"
    )
    with pytest.raises(RttmError, match=r"^-a entry 1 \(192\.0\.2\.9:2101\) is not an address "):
        cluster.check_own_address(Place(1, ("127.0.0.1:1", "192.0.2.9:2101")))
    with pytest.raises(RttmError, match=r"^-a entry 0 \(no-such-host\.invalid:1\): "):
        cluster.check_own_address(Place(0, ("no-such-host.invalid:1",)))


def test_a_pod_name_without_its_statefulset_name_is_no_place() -> None:
    assert cluster.place(options(), {"BYTEWAX_POD_NAME": "rttm-ingest-2"}) is None


def test_a_peer_timeout_below_a_second_is_allowed() -> None:
    assert cluster.peer_timeout(options("--peer-timeout", "0.5"), {}) == 0.5


def test_a_port_whose_last_connection_is_in_time_wait_can_be_listened_on_again() -> None:
    """A cluster restarted right after a crash finds its ports in TIME_WAIT: still usable."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the listening side closes first: its end waits in TIME_WAIT
    server.close()
    client.close()
    cluster.check_own_address(Place(0, (f"127.0.0.1:{port}",)))


WATCH = """
import sys, time
from rttm.core import stopping
from rttm.ops import cluster
from rttm.ops.cluster import Place
stopping.install()
began = sys.argv[1] == "began"
cluster.watch_start(Place(1, ("127.0.0.1:1", "127.0.0.1:2")), float(sys.argv[2]), lambda: began)
print("watching", flush=True)
time.sleep(4)
print("slept", flush=True)
"""


def watch(
    mode: str, sig: signal.Signals | None = None, timeout: float = 1.0
) -> subprocess.CompletedProcess[str]:
    """The start-up watch in a process of its own: ``began`` or not, maybe signalled."""
    command = [sys.executable, "-c", WATCH, mode, str(timeout)]
    process = subprocess.Popen(
        command, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if sig is not None:
        assert process.stdout is not None
        assert process.stdout.readline() == "watching\n"
        process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_cluster_that_does_not_form_in_time_ends_the_process_with_one_line() -> None:
    began = time.monotonic()
    ended = watch("waiting", timeout=2.0)
    assert time.monotonic() - began >= 2.0  # it waited the whole timeout
    assert ended.returncode == 1
    assert "slept" not in ended.stdout
    assert ended.stderr.splitlines() == [
        "rttm: error: the cluster did not form within 2 s: process 1 (127.0.0.1:2) waited "
        "for 127.0.0.1:1; start every process with the same -a list, and check each can "
        "reach the others"
    ]


def test_a_cluster_that_formed_is_left_alone() -> None:
    ran = watch("began")
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "watching\nslept\n", "")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_waiting_for_peers_stops_at_once(sig: signal.Signals) -> None:
    stopped = watch("waiting", sig, timeout=60)  # the signal, not the timeout, ends it
    assert stopped.returncode == 0
    assert "slept" not in stopped.stdout
    assert stopped.stderr.splitlines() == [
        f"rttm: stopped on {sig.name} before the cluster formed (process 1 (127.0.0.1:2) "
        "waited for 127.0.0.1:1)"
    ]


def test_a_cluster_process_never_makes_a_recovery_store_by_itself(tmp_path: Path) -> None:
    empty = tmp_path / "rec"
    with pytest.raises(RttmError) as refused:
        run_flow.recovery(empty, 0.0, Place(1, ("h:1", "h:2", "h:3")))
    assert str(refused.value) == (
        f"recovery directory {empty} holds no parts; a cluster's are made once, before its "
        f"first start: mkdir -p {empty} && python -m bytewax.recovery {empty} 3 "
        "(docs/scaling.md: recovery layouts)"
    )
    assert not empty.exists()
    alone = run_flow.recovery(empty, 0.0)  # a process alone makes its own, of one part
    assert alone is not None
    assert not alone.existing
    assert sorted(p.name for p in empty.iterdir()) == ["part-0.sqlite3"]


def test_without_the_cluster_variables_no_place_is_left() -> None:
    """What a supervisor strips from its children's environment is all a place comes from."""
    env = {
        "BYTEWAX_PROCESS_ID": "1",
        "BYTEWAX_ADDRESSES": "a:1;b:1",
        "BYTEWAX_POD_NAME": "rttm-ingest-1",
        "BYTEWAX_STATEFULSET_NAME": "rttm-ingest",
        "RTTM_PEER_TIMEOUT": "5",
    }
    assert cluster.place(options(), env) is not None
    stripped = {k: v for k, v in env.items() if k not in cluster.VARIABLES}
    assert stripped == {"RTTM_PEER_TIMEOUT": "5"}
    assert cluster.place(options(), stripped) is None


GUARD = """
import sys, time
from rttm.core import stopping
from rttm.ops import cluster
from rttm.core.errors import RttmError
stopping.install()
try:
    cluster.guard(sys.argv[1:], lambda: False)
except RttmError as exc:
    print("refused:", exc, flush=True)
    sys.exit(2)
print("guarded", flush=True)
time.sleep(5)
print("alone", flush=True)
"""


@pytest.mark.parametrize(
    ("argv", "env", "status", "out", "err"),
    [
        (
            ["dataflows.rttm", "-w", "1", "-r", "rec", "-s", "5", "-b", "0"],
            {},
            0,
            "guarded\nalone\n",
            "",
        ),
        (
            ["dataflows.rttm", "-w", "1", "-i", "1", "-a", "127.0.0.1:1;127.0.0.1:{port}"],
            {"RTTM_PEER_TIMEOUT": "1"},
            1,
            "guarded\n",
            "rttm: error: the cluster did not form within 1 s: process 1 (127.0.0.1:{port}) "
            "waited for 127.0.0.1:1; start every process with the same -a list, and check each "
            "can reach the others\n",
        ),
        (
            ["dataflows.rttm"],
            {"BYTEWAX_PROCESS_ID": "0", "BYTEWAX_ADDRESSES": "192.0.2.9:{port}"},
            2,
            "refused: -a entry 0 (192.0.2.9:{port}) is not an address of this host: each "
            "process listens on its own entry as written, so use an address of its own interfaces "
            "(NAT or a mapped port cannot be bound)\n",
            "",
        ),
    ],
    ids=["alone", "peer-missing", "not-own-address"],
)
def test_a_flow_module_run_by_bytewax_run_guards_its_cluster_start(
    argv: list[str], env: dict[str, str], status: int, out: str, err: str
) -> None:
    port = str(free_port())
    argv = [arg.replace("{port}", port) for arg in argv]
    env = {k: v.replace("{port}", port) for k, v in env.items()}
    result = subprocess.run(
        [sys.executable, "-c", GUARD, *argv],
        cwd=REPO,
        text=True,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        status,
        out.replace("{port}", port),
        err.replace("{port}", port),
    )
