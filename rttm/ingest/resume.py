"""Where each Kafka partition resumes: the database's own record of what it stores.

Each shard records in ``rttm_ingest_progress``, in the same transaction as its rows, how far
it has written each partition; the minimum over the shards is where the partition resumes,
so a restart skips nothing that is not stored, and after a clean stop re-reads nothing that
is (after a crash, what faster shards committed beyond the slowest). Before the flow starts,
the record is checked against the broker:

- a topic deleted and created again (its topic id changed, ``rttm_ingest_topics``) has its
  positions dropped and is read from its beginning: its offsets started again from 0;
- a position older than the partition's oldest message (retention deleted the rest)
  resumes at the oldest message kept, with one warning line;
- positions of shards that ``RTTM_SHARDS`` no longer has are folded into the current shards
  (each keeps the oldest of the two), so none of their messages is skipped;
- every shard gets a row for every partition before the flow starts (at the partition's
  oldest message, or, for a shard added by a larger ``RTTM_SHARDS``, at where the others
  resume): the minimum is then over all shards, never over the shards that happened to
  commit first. Otherwise a crash after shard 0's first commit, before shard 1's, would
  resume past rows that only shard 1 was to write.

A recovery snapshot's offset never overrides it (:func:`rttm.core.stream.source.resume_offset`):
the database is the record of what is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import psycopg

from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.db.connect import Conn, connect
from rttm.core.db.retry import describe_fault
from rttm.core.errors import RttmError
from rttm.core.kafka_topics import Where

_LOG = logging.getLogger(__name__)

_PROGRESS = (
    "SELECT topic, kafka_partition, shard, next_offset FROM rttm_ingest_progress"
    " WHERE topic = ANY(%s) ORDER BY topic, kafka_partition, shard FOR UPDATE"
)
_IDS = "SELECT topic, topic_id FROM rttm_ingest_topics WHERE topic = ANY(%s)"
_NOTE_ID = (
    "INSERT INTO rttm_ingest_topics (topic, topic_id) VALUES (%s, %s) ON CONFLICT (topic)"
    " DO UPDATE SET topic_id = excluded.topic_id, seen_at = now()"
)
_DROP_TOPIC = "DELETE FROM rttm_ingest_progress WHERE topic = %s"
_LOWER = (
    "UPDATE rttm_ingest_progress SET next_offset = %s, updated_at = now()"
    " WHERE topic = %s AND kafka_partition = %s AND shard = %s"
)
_INSERT = (
    "INSERT INTO rttm_ingest_progress (topic, kafka_partition, shard, next_offset)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"  # another process of a cluster did
)
_DROP_SHARDS = "DELETE FROM rttm_ingest_progress WHERE topic = ANY(%s) AND shard >= %s"
_SUMMED = (
    "SELECT topic, sum(next_offset) FROM (SELECT topic, kafka_partition, min(next_offset)"
    " AS next_offset FROM rttm_ingest_progress WHERE topic = ANY(%s) GROUP BY 1, 2) AS p"
    " GROUP BY topic"
)


def resume_positions(
    kafka: KafkaSettings, url: str, partitions: Mapping[str, int], shards: int
) -> dict[Where, int]:
    """The offset each partition of ``partitions`` resumes at (see the module docstring).

    Runs in one transaction that locks the topics' progress rows, so the processes of a
    cluster starting together agree (the second sees what the first decided).
    """
    ids = kafka_topics.topic_ids(kafka, partitions)
    starts = kafka_topics.start_offsets(kafka, partitions)
    try:
        with connect(url) as conn, conn.transaction():
            rows = conn.execute(_PROGRESS, (list(partitions),)).fetchall()
            recreated = _note_topic_ids(conn, ids)
            stored: dict[Where, dict[int, int]] = {}
            for topic, partition, shard, offset in rows:
                if topic not in recreated:
                    stored.setdefault((topic, partition), {})[shard] = offset
            _fold_removed_shards(conn, stored, shards, list(partitions))
            _claim_every_shard(conn, stored, starts, shards)
    except psycopg.Error as exc:
        message = describe_fault(exc, "the start-up's check of the resume positions")
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            message += " (run `rttm db grant-ingest ROLE` again after `rttm db migrate`)"
        raise RttmError(message) from None
    positions = {where: min(by_shard.values()) for where, by_shard in stored.items()}
    return still_kept(positions, starts)


def still_kept(positions: Mapping[Where, int], starts: Mapping[Where, int]) -> dict[Where, int]:
    """``positions``, each moved up to its partition's oldest message where retention took it.

    Those messages are lost to RTTM (deleted before it stored them); one warning says so.
    """
    kept = dict(positions)
    for where, offset in positions.items():
        oldest = starts.get(where, 0)
        if offset < oldest:
            _LOG.warning(
                "%s[%d]: offsets %d to %d were deleted by retention before RTTM stored them;"
                " resuming at %d, the oldest message kept",
                *where,
                offset,
                oldest - 1,
                oldest,
            )
            kept[where] = oldest
    return kept


def _note_topic_ids(conn: Conn, ids: Mapping[str, str]) -> set[str]:
    """Record each topic's id; the topics whose id changed lose their positions."""
    known: dict[str, str] = dict(conn.execute(_IDS, (list(ids),)).fetchall())
    recreated = set()
    for topic, topic_id in ids.items():
        before = known.get(topic)
        if before is not None and before != topic_id:
            _LOG.warning(
                "%s was deleted and created again (topic id %s, was %s): reading it from"
                " its beginning",
                topic,
                topic_id,
                before,
            )
            conn.execute(_DROP_TOPIC, (topic,))
            recreated.add(topic)
        if before != topic_id:
            conn.execute(_NOTE_ID, (topic, topic_id))
    return recreated


def _fold_removed_shards(
    conn: Conn, stored: dict[Where, dict[int, int]], shards: int, topics: list[str]
) -> None:
    """Fold positions of shards >= ``shards`` into the current ones (in ``stored`` too)."""
    removed = sorted({s for by_shard in stored.values() for s in by_shard if s >= shards})
    if not removed:
        return
    for (topic, partition), by_shard in stored.items():
        gone = [by_shard.pop(s) for s in removed if s in by_shard]
        if not gone:
            continue
        oldest = min(gone)
        if not by_shard:  # only removed shards wrote it: shard 0 takes over their position
            conn.execute(_INSERT, (topic, partition, 0, oldest))
            by_shard[0] = oldest
        for shard, offset in by_shard.items():
            if offset > oldest:
                conn.execute(_LOWER, (oldest, topic, partition, shard))
                by_shard[shard] = oldest
    conn.execute(_DROP_SHARDS, (topics, shards))
    _LOG.warning(
        "positions of shards %s (RTTM_SHARDS is now %d) folded into the current shards",
        ", ".join(map(str, removed)),
        shards,
    )


def _claim_every_shard(
    conn: Conn, stored: dict[Where, dict[int, int]], starts: Mapping[Where, int], shards: int
) -> None:
    """Give every shard < ``shards`` a position for every partition (in ``stored`` too).

    A partition nobody wrote yet starts at its oldest message. A shard missing beside
    others is new (``RTTM_SHARDS`` was raised): it takes where the partition resumes.
    """
    for where, oldest in starts.items():
        by_shard = stored.setdefault(where, {})
        offset = min(by_shard.values(), default=oldest)
        for shard in range(shards):
            if shard not in by_shard:
                conn.execute(_INSERT, (*where, shard, offset))
                by_shard[shard] = offset


def stored_positions(url: str, topics: Sequence[str]) -> dict[str, int]:
    """Per topic, its partitions' resume offsets summed: how many messages are behind us."""
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(_SUMMED, (list(topics),)).fetchall()
    return {topic: int(total) for topic, total in rows}
