"""Ground truth of a seeded workload, and what a database holds of it, per table."""

from __future__ import annotations

from collections import defaultdict

import psycopg
from psycopg import sql

from benchmarks.workload import Workload
from rttm.decode import Accepted, decode_message
from rttm.registry import TOPICS


def expected_keys(work: Workload) -> dict[str, set[str]]:
    """Per table, the dedupe keys of the distinct valid events of ``work``."""
    keys: dict[str, set[str]] = defaultdict(set)
    for topic, key, value in work.messages:
        result = decode_message(topic, key, value, 0, 0, 0)
        if isinstance(result, Accepted):
            keys[result.spec.table].add(result.dedupe_key)
    return keys


def stored_keys(url: str) -> dict[str, list[str]]:
    """Per ingested table (rejects aside), the dedupe key of every row it holds."""
    with psycopg.connect(url) as conn:
        return {
            spec.table: [
                key
                for (key,) in conn.execute(
                    sql.SQL("SELECT dedupe_key FROM {}").format(sql.Identifier(spec.table))
                ).fetchall()
            ]
            for spec in TOPICS
        }
