"""Command-line interface of RTTM (``rttm``)."""

from __future__ import annotations

import argparse
from typing import Any, TypeAlias

from rttm.core import logs

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def say(line: str) -> None:
    """A progress line for the operator (stderr, so stdout stays parseable; ``rttm.core.logs``)."""
    logs.write(line)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a text with line breaks is kept as written.

    Descriptions (one line in the source) are wrapped as usual; the ``environment:`` list
    of :func:`add_command`, laid out by :mod:`rttm.ops.settings_table`, is not.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_command(
    commands: Subcommands, name: str, *, help: str, description: str, **options: Any
) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` ends with the environment variables it reads.

    The list comes from :mod:`rttm.ops.settings_table`, by the command's name as typed after
    ``rttm`` (``db migrate``); a group of commands (``rttm db``) lists none itself.
    """
    from rttm.ops import settings_table  # here: it imports rttm.cli modules itself

    parser = commands.add_parser(
        name, help=help, description=description, formatter_class=HelpFormatter, **options
    )
    parser.epilog = settings_table.epilog(parser.prog.removeprefix("rttm ").strip())
    return parser
