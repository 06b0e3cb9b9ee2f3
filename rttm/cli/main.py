"""The ``rttm`` command: one entry point, one subcommand module per area."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rttm import __version__
from rttm.cli import (
    db_commands,
    demo_commands,
    ingest_commands,
    lag_commands,
    metrics_commands,
    rules_commands,
    run_commands,
    schema_commands,
    serve_commands,
    simulate_commands,
    stack_commands,
    topic_commands,
    view_commands,
)
from rttm.core import logs
from rttm.core.errors import RttmError
from rttm.ops import supervisor

#: Exit status of a failure the user can act on; argparse uses 2 for usage errors.
EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="rttm",
        description="Real-time trade monitoring: watch every trade through your Kafka pipeline.",
        epilog="Servers come from RTTM_KAFKA_BROKERS and RTTM_DATABASE_URL, "
        "else from the local stack started by `rttm up`. `rttm COMMAND --help` ends with the "
        "environment variables COMMAND reads and their defaults; README.md's "
        '"Configuration" table lists them all.',
    )
    parser.add_argument("--version", action="version", version=f"rttm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        stack_commands,
        db_commands,
        topic_commands,
        simulate_commands,
        ingest_commands,
        metrics_commands,
        lag_commands,
        schema_commands,
        view_commands,
        serve_commands,
        run_commands,
        demo_commands,
        rules_commands,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``rttm`` command; returns the exit status."""
    supervisor.bind_to_parent()
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except RttmError as exc:
        logs.write(f"rttm: error: {exc}", "ERROR")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `rttm status | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status
