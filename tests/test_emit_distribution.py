"""The rttm-emit distribution alone, in a fresh venv: no server inside, events land in RTTM.

One venv per module: ``pip install -c constraints.txt ./rttm-emit`` from PyPI (pip's cache
helps), on Python 3.13 when it runs here, the version Bytewax cannot install on.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from rttm.core.config import KafkaSettings
from rttm.core.registry import BY_NAME, COLUMN_RENAMES, REJECTS_TABLE
from rttm.ops import schema_export
from tests.ingest_helpers import REPO, counts, create_topics, ingest, rows

pytestmark = pytest.mark.integration

EMIT_DIR = REPO / "rttm-emit"
#: What the server needs and a service embedding the emitter must not get.
SERVER_ONLY = {"rttm", "bytewax", "fastapi", "uvicorn", "starlette", "psycopg", "psycopg-binary"}
#: What a venv holds before anything is installed (setuptools: Python 3.11's venvs only).
VENV_BASE = {"pip", "setuptools"}
SUPPORTED = "import sys; print(sys.executable); sys.exit(not (3, 11) <= sys.version_info < (3, 14))"


def _supported(python: str) -> str | None:
    """The real path of ``python`` if it runs and rttm-emit supports it (3.11 to 3.13)."""
    try:
        found = subprocess.run(
            [python, "-c", SUPPORTED], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    return found.stdout.strip() if found.returncode == 0 else None


def newest_python() -> str:
    """python3.13 if it runs here, else this interpreter.

    A pyenv shim named python3.13 runs only when pyenv has selected 3.13, so pyenv's
    installed 3.13 interpreters are tried as well.
    """
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = glob.glob(str(pyenv / "versions" / "3.13*" / "bin" / "python3.13"))
    candidates = [shutil.which("python3.13"), *sorted(installed, reverse=True)]
    for candidate in candidates:
        if candidate and (found := _supported(candidate)):
            return found
    return sys.executable


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without RTTM's settings, the test's venv or Python paths."""
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith(("RTTM_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**keep, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


class Venv:
    """A fresh virtual environment holding the rttm-emit distribution and what it requires."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``python -I ARGS`` in the venv (isolated: neither this checkout nor PYTHONPATH)."""
        return subprocess.run(
            [str(self.python), "-I", *args],
            env=_clean_env(**env),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def script(self, code: str, *args: str, **env: str) -> Any:
        """Run ``code`` with ``args`` in the venv; returns the JSON it printed last."""
        done = self.run("-c", code, *args, **env)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    root = tmp_path_factory.mktemp("rttm-emit-venv")
    made = subprocess.run(
        [newest_python(), "-m", "venv", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    venv = Venv(root)
    installed = subprocess.run(
        [
            str(venv.python),
            "-m",
            "pip",
            "install",
            "-c",
            str(REPO / "constraints.txt"),
            str(EMIT_DIR),
        ],
        env=_clean_env(),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    yield venv
    shutil.rmtree(root, ignore_errors=True)


INSPECT = """
import importlib.metadata as md, importlib.util, json, re, sys
dist = md.distribution("rttm-emit")
files = [str(f) for f in dist.files or []]
license = next(f for f in dist.files or [] if f.name == "LICENSE")
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "installed": sorted(re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower()
                        for d in md.distributions()),
    "requires": dist.requires or [],
    "version": dist.version,
    "files": files,
    "license": dist.locate_file(license).read_text(),
    "rttm": importlib.util.find_spec("rttm") is not None,
}))
"""


def _package_version() -> str:
    text = (EMIT_DIR / "src" / "rttm_emit" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    assert found
    return found.group(1)


def test_the_distribution_installs_alone_with_its_types_and_license(venv: Venv) -> None:
    found = venv.script(INSPECT)
    assert tuple(found["python"]) >= (3, 11)
    installed = set(found["installed"])
    assert not installed & SERVER_ONLY
    assert installed - VENV_BASE == {"rttm-emit", "confluent-kafka", "msgspec"}
    requires = [Requirement(line) for line in found["requires"]]
    assert sorted(r.name for r in requires) == ["confluent-kafka", "msgspec"]
    assert all(r.marker is None and not r.extras for r in requires)
    assert found["version"] == _package_version()
    assert "rttm_emit/py.typed" in found["files"]
    assert found["license"] == (REPO / "LICENSE").read_text()
    assert not found["rttm"]  # the server is not importable, and rttm_emit imported without it
    checked = venv.run("-m", "pip", "check")
    assert checked.returncode == 0, checked.stdout


def test_the_package_writes_the_json_schemas_rttm_exports(venv: Venv, tmp_path: Path) -> None:
    done = venv.run("-m", "rttm_emit.schemas", str(tmp_path / "package"))
    assert done.returncode == 0, done.stderr
    ours = schema_export.export(tmp_path / "server")
    assert len(done.stdout.splitlines()) == len(ours) == len(BY_NAME)
    for path in ours:
        assert (tmp_path / "package" / path.name).read_text() == path.read_text(), path.name


EMIT = """
import json, sys
from rttm_emit import Emitter
emitter = Emitter()  # RTTM_KAFKA_BROKERS
queued = [getattr(emitter, call)(**kwargs) for call, kwargs in json.loads(sys.argv[1])]
left = emitter.close(timeout=30)
c = emitter.counters
print(json.dumps({"queued": queued, "left": left, "sent": c.sent, "failed": c.failed,
                  "dropped": c.dropped}))
"""


def _calls(tag: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per topic, the emitter call and its arguments (event id and time left to the emitter)."""
    trade = f"T-{tag}"
    return {
        "rttm.trade.events": (
            "trade_event",
            {
                "trade_id": trade,
                "service_name": "pms-core",
                "event_type": "POSITION_UPDATED",
                "event_status": "SUCCESS",
                "source_queue": "trade-valid",
                "topic_name": "trade-valid",
                "partition": 1,
                "offset": 7,
                "message": "position updated",
            },
        ),
        "rttm.queue.metrics": (
            "queue_metrics",
            {
                "service_name": f"pms-{tag}",
                "topic_name": "trade-valid",
                "partition": 1,
                "produced_offset": 9,
                "consumed_offset": 7,
            },
        ),
        "rttm.dlq.events": (
            "dlq_event",
            {
                "trade_id": trade,
                "service_name": "validation-service",
                "topic_name": "trade-dlq",
                "reason": "Schema validation failed",
            },
        ),
        "rttm.error.events": (
            "error_event",
            {
                "service_name": "pms-core",
                "error_type": "DB_TIMEOUT",
                "error_message": "Timeout while updating position",
                "trade_id": trade,
            },
        ),
        "rttm.log.events": (
            "log_event",
            {
                "service_name": "analytics-service",
                "log_level": "WARN",
                "log_category": "PROCESSING_DELAY",
                "message": "took 2.4 s",
                "trade_id": trade,
            },
        ),
    }


def test_its_events_land_in_rttms_tables_through_the_real_ingestion(
    venv: Venv, kafka: KafkaSettings, migrated_db: str
) -> None:
    create_topics(kafka)
    calls = _calls(uuid.uuid4().hex[:8])
    before = datetime.now(UTC)
    result = venv.script(EMIT, json.dumps(list(calls.values())), RTTM_KAFKA_BROKERS=kafka.brokers)
    after = datetime.now(UTC)
    assert result == {"queued": [True] * 5, "left": 0, "sent": 5, "failed": 0, "dropped": 0}
    ingest(kafka, migrated_db)
    stored = counts(migrated_db)
    assert stored.pop(REJECTS_TABLE) == 0
    assert stored == {BY_NAME[topic].table: 1 for topic in calls}
    for topic, (_, kwargs) in calls.items():
        spec = BY_NAME[topic]
        columns = [COLUMN_RENAMES.get(name, name) for name in kwargs]
        ((*values, event_id, moment, dedupe_key),) = rows(
            migrated_db, spec.table, [*columns, "event_id", spec.time_field, "dedupe_key"]
        )
        assert values == list(kwargs.values()), topic
        assert uuid.UUID(event_id).version == 7, topic
        assert dedupe_key == f"e:{event_id}", topic  # deduplicated on the emitter's id
        assert before <= moment <= after, topic
