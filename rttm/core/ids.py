"""UUIDv7 event ids: a re-export of :func:`rttm_emit.ids.uuid7`, kept for existing imports."""

from __future__ import annotations

from rttm_emit.ids import uuid7

__all__ = ["uuid7"]
