"""Operator logs: ``RTTM_LOG_LEVEL`` and ``RTTM_LOG_FORMAT=json`` (one object per line)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import pytest

from rttm.core import logs
from tests.ingest_helpers import REPO


def test_a_json_line_holds_time_level_logger_and_message_and_parses() -> None:
    record = json.loads(logs.json_line('said "hi"\nthen more', "WARNING", "rttm.x", 61.9995))
    assert record == {
        "time": "1970-01-01T00:01:01.999Z",
        "level": "WARNING",
        "logger": "rttm.x",
        "message": 'said "hi"\nthen more',
    }


def test_the_json_formatter_keeps_a_traceback_in_one_object() -> None:
    try:
        msg = "boom"
        raise ValueError(msg)
    except ValueError:
        record = logging.LogRecord(
            "rttm.sink", logging.ERROR, __file__, 1, "lost %s", ("db",), sys.exc_info()
        )
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == (
        "ERROR",
        "rttm.sink",
        "lost db",
    )
    assert parsed["exc_info"].endswith("ValueError: boom")


def test_operator_lines_follow_the_level_and_the_format(monkeypatch: pytest.MonkeyPatch) -> None:
    assert logs.render("progress") == "progress"
    monkeypatch.setenv(logs.ENV_LEVEL, "warning")
    assert logs.render("progress") is None
    assert logs.render("rttm: error: x", "ERROR") == "rttm: error: x"
    monkeypatch.setenv(logs.ENV_FORMAT, "json")
    line = logs.render("rttm: error: x", "ERROR")
    assert line is not None
    assert json.loads(line)["message"] == "rttm: error: x"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "RTTM_LOG_LEVEL",
            "LOUD",
            "RTTM_LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR",
        ),
        ("RTTM_LOG_FORMAT", "xml", "RTTM_LOG_FORMAT='xml': expected one of text, json"),
    ],
)
def test_a_bad_log_setting_is_one_line(variable: str, value: str, expected: str) -> None:
    commands = (
        ["rttm", "serve"],
        ["rttm", "ingest"],
        ["rttm", "run"],
        ["rttm", "simulate"],
        ["rttm", "demo"],
        ["bytewax.run", "dataflows.metrics"],
    )
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={variable: value, "PATH": "/usr/bin:/bin"},
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.splitlines() == [f"rttm: error: {expected}"], command


def test_a_failure_in_json_mode_is_a_json_object() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rttm", "ingest", "-i", "3", "-a", "127.0.0.1:1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"RTTM_LOG_FORMAT": "json"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR"
    assert record["message"] == "rttm: error: -i 3 is not an index of the 1 addresses in -a"


SETUP = """
import logging, sys
from rttm.core import logs
logs.setup()
logging.getLogger("rttm.sink").warning("database unavailable: %s", "refused")
logging.getLogger("rttm.sink").debug("a detail")
logging.getLogger("rttm.kafka").error("librdkafka noise")
logs.write("progress line")
"""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {},
            [
                r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING rttm.sink: database "
                r"unavailable: refused$",
                r"^progress line$",
            ],
        ),
        (
            {"RTTM_LOG_LEVEL": "DEBUG"},
            [
                r"WARNING rttm.sink: database unavailable: refused$",
                r"DEBUG rttm.sink: a detail$",
                r"^progress line$",
            ],
        ),
        ({"RTTM_LOG_LEVEL": "ERROR"}, []),
    ],
    ids=["text", "debug", "error"],
)
def test_setup_gives_the_process_its_level_and_text_format(
    settings: dict[str, str], expected: list[str]
) -> None:
    lines = run_setup(settings)
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.search(pattern, line), (line, pattern)


def test_setup_in_json_gives_one_object_per_line() -> None:
    records = [json.loads(line) for line in run_setup({"RTTM_LOG_FORMAT": "json"})]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("WARNING", "rttm.sink", "database unavailable: refused"),
        ("INFO", "rttm", "progress line"),
    ]


def run_setup(settings: dict[str, str]) -> list[str]:
    """stderr lines of a process that sets up its logging with ``settings`` and logs a few."""
    result = subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=settings,
        timeout=60,
        check=True,
    )
    return result.stderr.splitlines()


def test_a_bad_format_setting_reads_as_text_where_it_cannot_be_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(logs.ENV_FORMAT, "json")
    assert logs.json_enabled() is True
    monkeypatch.setenv(logs.ENV_FORMAT, "yaml")
    assert logs.json_enabled() is False
    assert logs.render("line") == "line"
