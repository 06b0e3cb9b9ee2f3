"""One process of a Bytewax cluster: its place (``-i``/``-a``) and a start-up timeout.

Bytewax connects every process of a cluster to every other before any of them starts the
flow, and retries for ever while a peer is missing (``error connecting to worker 0 …;
retrying``). :func:`watch_start` ends that wait after a timeout with one line. Each
address is bound by its own process as written, so it must be an address of that host's
own interfaces; :func:`check_own_address` says so before Bytewax fails with ``os error 99``.
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rttm.core import logs, stopping
from rttm.core.errors import RttmError

ENV_PROCESS_ID = "BYTEWAX_PROCESS_ID"
ENV_ADDRESSES = "BYTEWAX_ADDRESSES"
ENV_POD_NAME = "BYTEWAX_POD_NAME"
ENV_STATEFULSET_NAME = "BYTEWAX_STATEFULSET_NAME"
#: Every variable that gives a process a place in a cluster (``bytewax.run`` also reads a
#: host file); a supervisor passes none of them on.
VARIABLES = frozenset(
    {ENV_PROCESS_ID, ENV_ADDRESSES, ENV_POD_NAME, ENV_STATEFULSET_NAME, "BYTEWAX_HOSTFILE_PATH"}
)
ENV_PEER_TIMEOUT = "RTTM_PEER_TIMEOUT"
#: Seconds a cluster process waits for its peers before it gives up.
DEFAULT_PEER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Place:
    """Where a process stands in its cluster: ``process_id`` of ``addresses``."""

    process_id: int
    addresses: tuple[str, ...]

    @property
    def own_address(self) -> str:
        """The address this process listens on."""
        return self.addresses[self.process_id]


def add_options(parser: argparse.ArgumentParser) -> None:
    """``-i``, ``-a`` (as ``bytewax.run``'s, same environment) and ``--peer-timeout``."""
    parser.add_argument(
        "-i",
        "--process-id",
        type=int,
        metavar="ID",
        help=f"this process's index in --addresses ({ENV_PROCESS_ID})",
    )
    parser.add_argument(
        "-a",
        "--addresses",
        metavar="'HOST:PORT;…'",
        help=f"every process of the cluster, the same list everywhere ({ENV_ADDRESSES})",
    )
    parser.add_argument(
        "--peer-timeout",
        type=float,
        metavar="SECONDS",
        help=f"give up when the cluster has not formed after this long ({ENV_PEER_TIMEOUT}, "
        f"default {DEFAULT_PEER_TIMEOUT_S:g})",
    )


def place(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Place | None:
    """This process's place from the options or the environment; None alone.

    As ``bytewax.run``, the id may come from a Kubernetes StatefulSet's pod name
    (``BYTEWAX_POD_NAME`` ending in ``-<ordinal>``, ``BYTEWAX_STATEFULSET_NAME``).
    """
    process_id = args.process_id
    if process_id is None and (text := env.get(ENV_PROCESS_ID, "").strip()):
        process_id = _integer(ENV_PROCESS_ID, text)
    if process_id is None and (pod := env.get(ENV_POD_NAME)):
        prefix = env.get(ENV_STATEFULSET_NAME, "") + "-"
        if prefix != "-" and pod.startswith(prefix):
            process_id = _integer(ENV_POD_NAME, pod.removeprefix(prefix))
    text = args.addresses or env.get(ENV_ADDRESSES, "")
    addresses = tuple(entry.strip() for entry in text.split(";") if entry.strip())
    if process_id is None and not addresses:
        return None
    if process_id is None or not addresses:
        msg = "a cluster process needs both -i/--process-id and -a/--addresses"
        raise RttmError(msg)
    if not 0 <= process_id < len(addresses):
        msg = f"-i {process_id} is not an index of the {len(addresses)} addresses in -a"
        raise RttmError(msg)
    for entry in addresses:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"-a entry {entry!r}: expected HOST:PORT, the port from 1 to 65535"
            raise RttmError(msg)
    if len(set(addresses)) < len(addresses):
        msg = "-a lists an address twice: each process needs its own"
        raise RttmError(msg)
    return Place(process_id, addresses)


def guard(argv: Sequence[str], started: Callable[[], bool]) -> None:
    """For a flow module run by ``python -m bytewax.run``: the checks ``rttm ingest`` makes.

    Reads this process's place from ``bytewax.run``'s own ``-i``/``-a`` in ``argv`` (or the
    environment); alone, it does nothing. Else it checks the own address and starts the
    peer timeout (``RTTM_PEER_TIMEOUT``). Call from the module, in the main thread, after
    :func:`rttm.core.stopping.install`; raises :class:`RttmError` for a place that cannot work.
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_options(parser)
    args, _ = parser.parse_known_args(argv)
    where = place(args)
    if where is not None:
        check_own_address(where)
        watch_start(where, peer_timeout(args), started)


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        msg = f"{name}={text!r}: expected a process index"
        raise RttmError(msg) from None


def peer_timeout(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> float:
    """Seconds to wait for the cluster to form (``--peer-timeout``, ``RTTM_PEER_TIMEOUT``)."""
    if args.peer_timeout is not None:
        value: float = args.peer_timeout
    else:
        text = env.get(ENV_PEER_TIMEOUT, "").strip() or str(DEFAULT_PEER_TIMEOUT_S)
        try:
            value = float(text)
        except ValueError:
            value = -1.0
    if not value > 0:
        msg = f"--peer-timeout / {ENV_PEER_TIMEOUT} must be a number of seconds > 0"
        raise RttmError(msg)
    return value


def check_own_address(where: Place) -> None:
    """Refuse, in one line, an own address this host cannot listen on."""
    host, _, port = where.own_address.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        msg = f"-a entry {where.process_id} ({where.own_address}): {exc.strerror}"
        raise RttmError(msg) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                why = (
                    "is not an address of this host: each process listens on its own "
                    "entry as written, so use an address of its own interfaces "
                    "(NAT or a mapped port cannot be bound)"
                )
            else:
                why = f"cannot be listened on: {exc.strerror}"
            msg = f"-a entry {where.process_id} ({where.own_address}) {why}"
            raise RttmError(msg) from None


def watch_start(where: Place, timeout: float, started: Callable[[], bool]) -> None:
    """End the process with one line if the cluster has not formed after ``timeout``.

    ``started`` says whether the flow began (its source listed its partitions: Bytewax
    does that only once every peer is connected). While Bytewax waits for its peers, no
    Python signal handler runs, so SIGINT and SIGTERM are watched here too (through the
    signal wake-up descriptor): a stop before the cluster formed ends the process at once,
    with nothing to write. Call from the main thread, after :func:`rttm.core.stopping.install`.
    """
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    peers = ", ".join(a for i, a in enumerate(where.addresses) if i != where.process_id)
    waited = f"process {where.process_id} ({where.own_address}) waited for {peers}"

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not started():
            left = deadline - time.monotonic()
            if left <= 0:
                stopping.fail(
                    f"the cluster did not form within {timeout:g} s: {waited}; "
                    "start every process with the same -a list, and check each "
                    "can reach the others"
                )
            readable, _, _ = select.select([wake_read], [], [], min(left, 1.0))
            if readable and (signals := os.read(wake_read, 64)) and not started():
                name = signal.Signals(signals[0]).name
                logs.write(f"rttm: stopped on {name} before the cluster formed ({waited})")
                os._exit(0)

    threading.Thread(target=watch, name="rttm-peer-timeout", daemon=True).start()
