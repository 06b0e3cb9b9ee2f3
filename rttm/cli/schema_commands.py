"""``rttm schema``: JSON Schema export of the message contracts."""

from __future__ import annotations

import argparse
from pathlib import Path

from rttm.cli import Subcommands, add_command
from rttm.ops import schema_export


def register(commands: Subcommands) -> None:
    """Add ``rttm schema export DIR``."""
    schema = commands.add_parser(
        "schema",
        help="message contracts as JSON Schema",
        description="The message contracts of the rttm.* topics, as JSON Schema for producers "
        "in other languages. `rttm schema export --help` tells more.",
    )
    actions = schema.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = add_command(
        actions,
        "export",
        help="write one JSON Schema file per topic into DIR",
        description="Write one JSON Schema file per rttm.* topic into DIR (created if missing) "
        "and print the paths written.",
    )
    export.add_argument("directory", type=Path, metavar="DIR")
    export.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> int:
    for path in schema_export.export(args.directory):
        print(path)
    return 0
