"""Ground truth of a seeded workload, and what a database holds of it, per table."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import psycopg
from psycopg import sql

from rttm.core.decode import Accepted, Rejected, decode_message
from rttm.core.registry import REJECTS_TABLE, TOPICS
from support.workload import Msg

#: A reject as the ground truth knows it: (topic, raw key, raw value, reason without the
#: message's Kafka coordinates, which the truth cannot know).
Reject = tuple[str, bytes | None, bytes | None, str]


def expected_keys(messages: Iterable[Msg]) -> dict[str, set[str]]:
    """Per table, the dedupe keys of the distinct valid events among ``messages``."""
    keys: dict[str, set[str]] = defaultdict(set)
    for topic, key, value in messages:
        result = decode_message(topic, key, value, 0, 0, 0)
        if isinstance(result, Accepted):
            keys[result.spec.table].add(result.dedupe_key)
    return keys


def expected_rejects(messages: Iterable[Msg]) -> Counter[Reject]:
    """The reject each malformed message must become: one per copy sent, retries included."""
    rejects: Counter[Reject] = Counter()
    for topic, key, value in messages:
        result = decode_message(topic, key, value, 0, 0, 0)
        if isinstance(result, Rejected):
            rejects[topic, key, value, result.reason.removeprefix(f"{topic}[0]@0: ")] += 1
    return rejects


def stored_rejects(url: str) -> Counter[Reject]:
    """Every reject the database holds, its reason checked against its own coordinates.

    A reason that does not start with the row's ``topic[partition]@offset`` is returned
    whole, so it matches no expected reject.
    """
    query = sql.SQL(
        "SELECT topic, kafka_partition, kafka_offset, raw_key, raw_value, reason FROM {}"
    ).format(sql.Identifier(REJECTS_TABLE))
    rejects: Counter[Reject] = Counter()
    with psycopg.connect(url) as conn:
        for topic, partition, offset, key, value, reason in conn.execute(query).fetchall():
            prefix = f"{topic}[{partition}]@{offset}: "
            detail = reason.removeprefix(prefix) if reason.startswith(prefix) else reason
            rejects[topic, key, value, detail] += 1
    return rejects


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
