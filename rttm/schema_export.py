"""JSON Schema of every ``rttm.*`` message, for producers written in other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from rttm.registry import TOPICS, TopicSpec

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_for(spec: TopicSpec) -> dict[str, Any]:
    """The JSON Schema of ``spec``'s message, with the topic and key rule described."""
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, **msgspec.json.schema(spec.struct)}
    schema["title"] = spec.name
    schema["description"] = (
        f"Message of Kafka topic {spec.name}, keyed by {' + '.join(spec.key_fields)}. "
        "Timestamps are RFC 3339 with a zone offset; unknown extra fields are ignored."
    )
    return schema


def export(folder: Path) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in TOPICS:
        path = folder / f"{spec.name}.schema.json"
        path.write_text(json.dumps(schema_for(spec), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
