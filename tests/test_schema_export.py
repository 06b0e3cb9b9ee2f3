"""``rttm schema export`` writes JSON Schemas that accept and refuse what the decoder does."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from rttm.cli.main import main
from rttm.core.registry import TOPICS
from tests.samples import SAMPLE_MESSAGES


def test_export_writes_one_schema_per_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "export", str(tmp_path / "schemas")]) == 0
    written = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert written == sorted(f"{spec.name}.schema.json" for spec in TOPICS)
    assert len(capsys.readouterr().out.splitlines()) == len(TOPICS)


@pytest.mark.parametrize("topic", list(SAMPLE_MESSAGES))
def test_schema_accepts_design_example_and_refuses_contract_breaks(
    tmp_path: Path, topic: str
) -> None:
    main(["schema", "export", str(tmp_path)])
    schema = json.loads((tmp_path / f"{topic}.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    example = SAMPLE_MESSAGES[topic]
    validator.validate(example)
    assert schema["title"] == topic
    required = set(schema["$defs"][next(iter(schema["$defs"]))]["required"])
    assert "event_id" not in required
    for field in required:
        broken = {k: v for k, v in example.items() if k != field}
        assert not validator.is_valid(broken), field
    for field, value in example.items():
        if isinstance(value, str) and not field.endswith("_time"):
            assert not validator.is_valid({**example, field: ""}), field
        if isinstance(value, int):
            assert not validator.is_valid({**example, field: -1}), field
