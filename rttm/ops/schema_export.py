"""JSON Schema export of the contracts: a re-export of :mod:`rttm_emit.schemas`.

``rttm schema export DIR`` and ``python -m rttm_emit.schemas DIR`` write the same files.
"""

from __future__ import annotations

from rttm_emit.schemas import JSON_SCHEMA_DIALECT, export, schema_for

__all__ = ["JSON_SCHEMA_DIALECT", "export", "schema_for"]
