"""Logging for RTTM's long-running processes: level and format from the environment.

``RTTM_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``; default ``INFO``) and
``RTTM_LOG_FORMAT`` (``text``, the default, or ``json``: one JSON object per line with
``time``, ``level``, ``logger`` and ``message``, for a log shipper). Every line a process
writes for its operator goes through :func:`render` or the ``logging`` handlers set up
here, so a JSON log holds nothing but JSON objects (a Python traceback or a line printed by
Bytewax's Rust core excepted: ``rttm run`` wraps those too).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from rttm.core.errors import RttmError

ENV_LEVEL = "RTTM_LOG_LEVEL"
ENV_FORMAT = "RTTM_LOG_FORMAT"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
#: The logger of the lines a command writes for its operator (progress, summaries).
OPERATOR = "rttm"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def level(env: Mapping[str, str] = os.environ) -> int:
    """The level ``RTTM_LOG_LEVEL`` names (INFO when unset); a bad name is an error."""
    name = env.get(ENV_LEVEL, "").strip().upper() or "INFO"
    if name not in LEVELS:
        msg = f"{ENV_LEVEL}={env[ENV_LEVEL]!r}: expected one of {', '.join(LEVELS)}"
        raise RttmError(msg)
    return int(logging.getLevelName(name))


def is_json(env: Mapping[str, str] = os.environ) -> bool:
    """Whether ``RTTM_LOG_FORMAT`` asks for JSON lines; a bad value is an error."""
    name = env.get(ENV_FORMAT, "").strip().lower() or "text"
    if name not in FORMATS:
        msg = f"{ENV_FORMAT}={env[ENV_FORMAT]!r}: expected one of {', '.join(FORMATS)}"
        raise RttmError(msg)
    return name == "json"


def json_line(
    message: str,
    level_name: str = "INFO",
    logger: str = OPERATOR,
    created: float | None = None,
    **extra: Any,
) -> str:
    """One log record as a JSON object on one line (no newline)."""
    moment = time.time() if created is None else created
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    record = {
        "time": f"{stamp}.{int(moment % 1 * 1000):03d}Z",
        "level": level_name,
        "logger": logger,
        "message": message,
        **extra,
    }
    return json.dumps(record, ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    """``logging`` records as :func:`json_line` objects (a traceback goes in ``exc_info``)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        extra = {"exc_info": self.formatException(record.exc_info)} if record.exc_info else {}
        return json_line(
            record.getMessage(), record.levelname, record.name, record.created, **extra
        )


def setup(env: Mapping[str, str] = os.environ) -> None:
    """Configure the root logger from the environment, once per process.

    Raises :class:`RttmError` for a bad ``RTTM_LOG_LEVEL`` or ``RTTM_LOG_FORMAT``.
    librdkafka's per-connection log lines are muted: RTTM's source and sink say once when a
    server becomes unavailable and once when it is back.
    """
    wanted, as_json = level(env), is_json(env)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT))
        root.addHandler(handler)
        root.setLevel(wanted)
    logging.getLogger("rttm.kafka").setLevel(logging.CRITICAL)


def json_enabled() -> bool:
    """Whether this process writes JSON lines (False for a bad setting, reported elsewhere)."""
    try:
        return is_json()
    except RttmError:
        return False


def write(message: str, level_name: str = "INFO") -> None:
    """Write an operator's line to stderr as :func:`render` makes it (nothing if filtered)."""
    text = render(message, level_name)
    if text is not None:
        print(text, file=sys.stderr, flush=True)


def render(message: str, level_name: str = "INFO") -> str | None:
    """An operator's line as this process writes it: as is, or as JSON; None if filtered.

    A bad setting here falls back to text at INFO: the process reports it when it sets up
    its logging, and a line about something else must not fail on it.
    """
    try:
        as_json, threshold = is_json(), level()
    except RttmError:
        as_json, threshold = False, logging.INFO
    if logging.getLevelName(level_name) < threshold:
        return None
    return json_line(message, level_name) if as_json else message
