"""Command-line interface of RTTM (``rttm``)."""

from __future__ import annotations

import argparse
from typing import TypeAlias

from rttm import logs

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def say(line: str) -> None:
    """A progress line for the operator (stderr, so stdout stays parseable; ``rttm.logs``)."""
    logs.write(line)
