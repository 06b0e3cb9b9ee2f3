"""Command-line interface of RTTM (``rttm``)."""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def say(line: str) -> None:
    """A progress line for the person at the terminal (stderr, so stdout stays parseable)."""
    print(line, file=sys.stderr, flush=True)
