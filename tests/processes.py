"""The commands operators run, as processes: started as a shell starts a job, stopped by a
signal to their process group, and waited on (a condition, ``/readyz``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from tests.ingest_helpers import REPO

#: A stop must end the process within this, from the signal (it takes about a second).
STOP_WITHIN_S = 10.0
RTTM = [sys.executable, "-m", "rttm"]
BYTEWAX_RUN = [sys.executable, "-m", "bytewax.run"]


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``command`` in its own process group, as a shell starts a job."""
    return subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, list[str]]:
    """Signal the process group; (exit status, stderr lines), checking it ended quickly."""
    os.killpg(process.pid, sig)
    sent = time.monotonic()
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < STOP_WITHIN_S, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert "panicked" not in err, err[-3000:]
    return process.returncode, err.strip().splitlines()


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # noqa: S110 - the database may be restarting
            pass
        time.sleep(0.1)
    msg = "condition not met in time"
    raise AssertionError(msg)


def probe(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of ``GET path`` on 127.0.0.1:``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def ready(port: int) -> Callable[[], bool]:
    """Whether the process on ``port`` answers /readyz with 200."""
    return lambda: probe(port, "/readyz") == (200, "ready\n")


def not_ready(port: int) -> Callable[[], bool]:
    """Whether the process on ``port`` answers /readyz with 503."""
    return lambda: probe(port, "/readyz")[0] == 503
