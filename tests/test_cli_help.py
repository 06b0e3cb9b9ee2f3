"""``--help`` of every command: a description, and the environment it reads.

The environment lists come from :mod:`rttm.ops.settings_table`; so must the README's
"Configuration" table, and every ``RTTM_*`` name in the code must be in it.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from rttm.cli.main import build_parser
from rttm.ops import settings_table

REPO = Path(__file__).resolve().parent.parent
NAME = re.compile(r"RTTM_[A-Z0-9_]*[A-Z0-9]")
#: A variable in a command's ``--help``: ``  NAME (default: …)`` under ``environment``.
LISTED = re.compile(r"^  ([A-Z][A-Z0-9_]+) \(default: (.*)\)$", re.MULTILINE)


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser below ``rttm``, by the command typed after ``rttm`` (``db migrate``)."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}".strip())
        if path:
            found[path] = parser

    walk(build_parser(), "")
    return found


PARSERS = _parsers()


def _is_group(parser: argparse.ArgumentParser) -> bool:
    """A parser that only holds actions (``rttm db``), as opposed to one that runs."""
    return parser.get_default("run") is None


def test_the_table_names_every_command_that_runs() -> None:
    runs = {path for path, parser in PARSERS.items() if not _is_group(parser)}
    assert runs == set(settings_table.COMMANDS)
    for setting in settings_table.SETTINGS:
        assert set(setting.commands) <= set(settings_table.COMMANDS), setting.name


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_command_has_a_description(command: str) -> None:
    parser = PARSERS[command]
    assert parser.description, f"rttm {command} has no description"
    assert parser.format_help().count(parser.description.split()[0]) >= 1


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_lists_exactly_the_environment_the_command_reads(command: str) -> None:
    text = PARSERS[command].format_help()
    listed = dict(LISTED.findall(text))
    expected = {s.name: s.default for s in settings_table.for_command(command)}
    assert listed == expected
    assert all(len(line) <= 100 for line in text.splitlines()), text


def test_the_top_level_help_says_where_the_environment_is_listed() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "`rttm COMMAND --help` ends with the environment variables" in text


def _readme_rows() -> dict[str, list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `"):
            name = cells[0].strip("`")
            assert name not in rows, f"{name} has two rows"
            rows[name] = cells
    return rows


def test_the_readme_configuration_table_matches_the_settings_table() -> None:
    rows = _readme_rows()
    table = {setting.name: setting for setting in settings_table.SETTINGS}
    assert sorted(rows) == sorted(table), "README rows and rttm/ops/settings_table.py differ"
    for name, cells in rows.items():
        assert cells[-1] == table[name].default, name


def _names_in_code() -> set[str]:
    """Every string constant of rttm/, dataflows/ and rttm_emit that is a whole ``RTTM_*`` name."""
    names: set[str] = set()
    for directory in ("rttm", "dataflows", "rttm-emit/src"):
        for path in sorted((REPO / directory).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and NAME.fullmatch(node.value)
                ):
                    names.add(node.value)
    return names


def test_every_variable_the_code_reads_is_in_the_table() -> None:
    names = _names_in_code()
    assert len(names) > 30  # the scan sees the code
    table = {setting.name for setting in settings_table.SETTINGS}
    assert names - table == set()
    assert {name for name in table if name.startswith("RTTM_")} - names == set()
