"""JSON Schema of every ``rttm.*`` message, for producers written in other languages.

``python -m rttm_emit.schemas DIR`` writes ``<topic>.schema.json`` for each topic into DIR
(the same files as RTTM's ``rttm schema export DIR``) and prints their paths.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from rttm_emit.topics import TOPICS, Topic

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_for(topic: Topic) -> dict[str, Any]:
    """The JSON Schema of ``topic``'s message, with the topic and key rule described."""
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, **msgspec.json.schema(topic.struct)}
    schema["title"] = topic.name
    schema["description"] = (
        f"Message of Kafka topic {topic.name}, keyed by {' + '.join(topic.key_fields)}. "
        "Timestamps are RFC 3339 with a zone offset; unknown extra fields are ignored."
    )
    return schema


def export(folder: Path) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for topic in TOPICS:
        path = folder / f"{topic.name}.schema.json"
        path.write_text(json.dumps(schema_for(topic), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rttm_emit.schemas DIR``: export, then print each path written."""
    parser = argparse.ArgumentParser(
        prog="python -m rttm_emit.schemas",
        description="Write one JSON Schema file per rttm.* topic into DIR (created if missing) "
        "and print the paths written.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    for path in export(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
