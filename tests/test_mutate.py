"""The mutation tool's mutants (``tests/mutate.py``): one spot each, where meant, nowhere else."""

from __future__ import annotations

import ast
import textwrap

import pytest

from tests.mutate import (
    Mutant,
    Result,
    Verdict,
    documented_equivalents,
    generate,
    report,
    restricted,
)

SOURCE = textwrap.dedent('''\
    """Module docstring: never mutated."""

    from __future__ import annotations

    import logging
    from typing import TYPE_CHECKING

    if TYPE_CHECKING:
        from collections.abc import Sequence

    _LOG = logging.getLogger(__name__)
    LIMIT: int = 10


    def check(values: Sequence[int], ratio: float = 0.5) -> bool:
        """Function docstring."""
        assert values, "never mutated"
        total = 0
        for value in values:
            if value < LIMIT and value not in (3, 4):
                total += value
        _LOG.warning("total %d", total * 2)
        if not total:
            msg = f"empty: {total + 1}"
            raise ValueError(msg)
        while total > 100:
            total = total - 100
        return True


    def label(flag: bool) -> str:
        text = "yes" if flag else "no"
        return "é" + text if flag is True else text
''')


@pytest.fixture(scope="module")
def mutants() -> dict[str, Mutant]:
    return {m.id.removeprefix("m.py:"): m for m in generate("m.py", SOURCE)}


@pytest.mark.parametrize(
    ("description", "line"),
    [
        ("20 <→<=", "if value <= LIMIT and value not in (3, 4):"),
        ("20 <→>", "if value > LIMIT and value not in (3, 4):"),
        ("20 not in→in", "if value < LIMIT and value in (3, 4):"),
        ("20 and→or", "if value < LIMIT or value not in (3, 4):"),
        ("20 negate if", "if not (value < LIMIT and value not in (3, 4)):"),
        ("20 3→4", "if value < LIMIT and value not in (4, 4):"),
        ("20 3→2", "if value < LIMIT and value not in (2, 4):"),
        ("21 +=→-=", "total -= value"),
        ("21 delete statement", "pass"),
        ("23 negate if", "if total:"),  # ``not`` removed, not doubled
        ("26 negate while", "while not total > 100:"),
        ("26 >→>=", "while total >= 100:"),
        ("27 -→+", "total = total + 100"),
        ("28 return True→return False", "return False"),
        ("32 negate ternary", 'text = "yes" if not flag else "no"'),
        ("33 is→is not", 'return "é" + text if flag is not True else text'),
        ('33 return "é" + text if flag is True…→return None', "return None"),
        ("12 10→11", "LIMIT: int = 11"),
        ("15 0.5→1.0", "def check(values: Sequence[int], ratio: float = 1.0) -> bool:"),
        ("15 0.5→0.25", "def check(values: Sequence[int], ratio: float = 0.25) -> bool:"),
    ],
)
def test_each_operator_changes_its_one_spot(
    mutants: dict[str, Mutant], description: str, line: str
) -> None:
    assert mutants[description].mutated_line == line


def test_left_alone(mutants: dict[str, Mutant]) -> None:
    lines = {int(key.split(" ")[0]) for key in mutants}
    # Docstrings, imports, the TYPE_CHECKING block, the assert, the logging call, the
    # message of the raise (the raise itself is deleted, nothing else).
    assert lines.isdisjoint({1, 3, 5, 6, 8, 9, 16, 17, 22, 24})
    assert [key for key in mutants if key.startswith("25 ")] == ["25 delete statement"]
    assert "11 delete statement" in mutants  # a plain assignment is fair game
    assert not any(key.startswith("12 ") and "int" in key for key in mutants)  # annotation
    assert not any(key.startswith("33 +") for key in mutants)  # string concatenation
    assert "33 negate ternary" not in mutants  # the ``is`` flip is that mutant already
    assert "28 delete statement" not in mutants  # the last return: ``return None`` is it


def test_a_mutant_changes_only_its_span(mutants: dict[str, Mutant]) -> None:
    original = SOURCE.splitlines()
    for mutant in mutants.values():
        lines = mutant.source.splitlines()
        assert mutant.source != SOURCE
        ast.parse(mutant.source)
        if mutant.id.endswith("delete statement") and mutant.mutated_line == "pass":
            continue  # a compound statement's deletion takes its block's lines too
        changed = [n for n, (a, b) in enumerate(zip(original, lines, strict=True)) if a != b]
        assert changed == [mutant.line - 1], mutant.id


def test_ids_are_unique_and_number_repeats_on_a_line() -> None:
    found = generate("m.py", "x = [1, 1]\n")
    assert [m.id for m in found] == [
        "m.py:1 delete statement",
        "m.py:1 1→2",
        "m.py:1 1→0",
        "m.py:1 1→2 #2",
        "m.py:1 1→0 #2",
    ]
    assert found[3].mutated_line == "x = [1, 2]"


def test_precedence_and_non_ascii_columns_are_kept() -> None:
    found = {m.id: m for m in generate("m.py", 'y = ("→", a or b and c)\nz = 2**3\n')}
    assert found["m.py:1 and→or"].mutated_line == 'y = ("→", a or (b or c))'
    assert found["m.py:2 2→1"].mutated_line == "z = 1**3"
    assert found["m.py:1 or→and"].mutated_line == 'y = ("→", a and (b and c))'
    negative = {m.id: m for m in generate("m.py", "z = 0**3\n")}
    assert negative["m.py:1 0→-1"].mutated_line == "z = (-1)**3"


def test_only_keeps_the_named_functions_and_classes(mutants: dict[str, Mutant]) -> None:
    kept = restricted(list(mutants.values()), frozenset({"label"}))
    assert kept
    assert {m.line for m in kept} <= {32, 33}
    assert restricted(list(mutants.values()), frozenset()) == list(mutants.values())


def test_documented_equivalents_come_from_their_section_only() -> None:
    markdown = textwrap.dedent("""\
        ## Other
        | `a.py:1 and→or` | not this section |

        ## Equivalent mutants

        | Mutant | Why |
        | --- | --- |
        | `rttm/core/decode.py:111 and→or` | both operands are falsy together |
        | `rttm/x.py:2 1→0 #2` | … |

        ## Next
        | `b.py:3 <→<=` | nor this |
    """)
    assert documented_equivalents(markdown) == [
        "rttm/core/decode.py:111 and→or",
        "rttm/x.py:2 1→0 #2",
    ]


def test_report_counts_documented_equivalents_apart_and_names_stale_ones() -> None:
    found = generate("m.py", "x = 1 < y\n")
    verdicts: list[Verdict] = ["killed", "timeout", "survived", "survived", "killed"]
    results = [Result(m, v, 1.0) for m, v in zip(found, verdicts, strict=True)]
    equivalents = [found[3].id, found[0].id, "m.py:9 and→or", "other.py:1 and→or"]
    lines = report("m.py", results, equivalents, {m.id for m in found}, 12.0)
    assert lines[0] == (
        "m.py: 5 mutants, 2 killed, 1 timed out, 1 survived, 1 equivalent (documented), "
        "kill rate 75.0 % (12 s)"
    )
    assert lines[1:] == [
        f"  survived: {found[2].id}",
        "      - x = 1 < y",
        f"      + {found[2].mutated_line}",
        f"  equivalent (documented): {found[3].id}",
        f"  stale equivalent entry (now killed): {found[0].id}",
        "  stale equivalent entry (no such mutant): m.py:9 and→or",
    ]


def test_an_elif_is_negated_and_its_statements_deleted_but_not_the_branch_whole() -> None:
    found = {m.id: m for m in generate("m.py", "if a:\n    f()\nelif b:\n    g()\n")}
    assert found["m.py:3 negate if"].mutated_line == "elif not b:"
    assert found["m.py:4 delete statement"].mutated_line == "pass"
    assert "m.py:3 delete statement" not in found
    assert found["m.py:1 delete statement"].source == "pass\n"
