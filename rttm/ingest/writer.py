"""Write chunks to PostgreSQL: set-based, one transaction per batch, retried until durable.

Fast path: ``COPY`` straight into each table, which is only correct when no row exists yet.
The dedupe step keeps duplicates off that path; a row that exists anyway (a replay after a
crash, a duplicate older than the dedupe window) makes the COPY fail with a unique
violation, and the batch is redone with the merge path — COPY into a temporary staging
table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING`` — which stays on for a while, since
replays come in runs. Failures are retried by the policy of ``rttm.core.db.retry`` (a lost
connection with capped backoff, the same batch in the same order, logging once when the
database goes and once when it is back; a lost race a few times, then with backoff).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

import psycopg
from psycopg import sql

from rttm.core.backoff import BACKOFF_CAP_S
from rttm.core.db import partitions
from rttm.core.db.connect import Conn, error_cause, sink_connection
from rttm.core.db.retry import Failure, Retry
from rttm.core.decode import Rejected, refusal_reason
from rttm.core.outage import OutageLog
from rttm.core.registry import BY_NAME, REJECTS_TABLE
from rttm.ingest import stats
from rttm.ingest.chunks import Chunk
from rttm.ingest.offsets import OffsetCommitter
from rttm.ingest.rows import EVENT_TIME, LAYOUTS, TOPIC_OF_TABLE, Row, reject_row

_LOG = logging.getLogger(__name__)
#: Day partitions are created only this close to today: a producer with a broken clock must
#: not make thousands of tables (its rows land in the default partition).
PARTITION_HORIZON_DAYS = 400
#: Batches written with the merge path after a conflict before trying COPY again.
MERGE_RUN = 20
#: Rows inserted per table by one batch (a replayed row already there is not counted).
Stored = dict[str, int]
_TRADE_TABLE = BY_NAME["rttm.trade.events"].table
_TRADE_TIME = EVENT_TIME[_TRADE_TABLE]


@dataclass(frozen=True)
class _TableSql:
    types: Sequence[str]
    copy: sql.Composed
    stage_create: sql.Composed
    stage_copy: sql.Composed
    merge: sql.Composed
    insert_one: sql.Composed


def _table_sql(table: str, columns: Sequence[str], types: Sequence[str]) -> _TableSql:
    name, stage = sql.Identifier(table), sql.Identifier(f"rttm_stage_{table}")
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    values = sql.SQL(", ").join(sql.Placeholder() * len(columns))
    # Binary COPY: about a third of text COPY's client cost per row, and cheaper to parse.
    return _TableSql(
        types=types,
        copy=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(name, cols),
        # Columns spelled out rather than LIKE the table: LIKE needs SELECT on it, which the
        # ingestion's role does not have (``rttm.core.db.roles``). Types come from the registry.
        stage_create=sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS"
        ).format(
            stage,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(pg_type))
                for column, pg_type in zip(columns, types, strict=True)
            ),
        ),
        stage_copy=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, cols),
        merge=sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
            name, cols, cols, stage
        ),
        insert_one=sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
            name, cols, values
        ),
    )


TABLE_SQL: dict[str, _TableSql] = {
    table: _table_sql(table, layout.columns, layout.types) for table, layout in LAYOUTS.items()
}
_UPSERT_PROGRESS = (
    "INSERT INTO rttm_ingest_progress (topic, kafka_partition, shard, next_offset)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (topic, kafka_partition, shard)"
    " DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()"
)


OUTAGE = OutageLog(
    _LOG, "database", f"retrying every batch with backoff up to {BACKOFF_CAP_S:.0f} s"
)


class ShardWriter:
    """One shard's connection and write logic (used by one sink partition)."""

    def __init__(self, url: str, shard: int, committer: OffsetCommitter | None) -> None:
        self._url, self._shard, self._committer = url, shard, committer
        self._conn: Conn | None = None
        self._staged: set[str] = set()
        self._known_days: set[date] = set()
        self._merge_left = 0

    def write(self, chunks: Sequence[Chunk]) -> None:
        """Make ``chunks`` durable; returns only once they are committed."""
        tables: dict[str, list[Row]] = {}
        positions: dict[tuple[str, int], int] = {}
        for chunk in chunks:
            for table, rows in chunk.tables.items():
                if rows:
                    tables.setdefault(table, []).extend(rows)
            positions[(chunk.topic, chunk.partition)] = chunk.next_offset
        if not positions:
            return
        retry = Retry(f"a batch of shard {self._shard}", OUTAGE)
        while True:
            try:
                conn = self._connection()
                self._ensure_partitions(conn, tables.get(_TRADE_TABLE))
                stored = self._commit(conn, tables, positions)
                break
            except psycopg.Error as exc:
                if retry.after(exc) is Failure.LOST:
                    stats.record_retry()
                    self._disconnect()
        OUTAGE.back()
        if self._committer is not None:
            try:  # informative only: a failure here must not redo the committed batch
                self._committer.written(conn, {topic for topic, _ in positions})
            except psycopg.Error as exc:
                _LOG.debug("offset commit skipped: %s", exc)
        rejects = stored.pop(REJECTS_TABLE, 0)
        stats.record_written(sum(stored.values()), rejects)

    def close(self) -> None:
        """Flush the last offset commit and close the connection."""
        if self._conn is not None and not self._conn.closed:
            if self._committer is not None:
                try:
                    self._committer.written(self._conn, (), force=True)
                    self._committer.close()
                except psycopg.Error as exc:
                    _LOG.warning("final offset commit skipped: %s", exc)
            self._conn.close()

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = sink_connection(self._url, f"rttm-ingest-shard-{self._shard}")
            self._staged.clear()
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _ensure_partitions(self, conn: Conn, rows: list[Row] | None) -> None:
        """Create the day partitions of the trade events about to be written, once each."""
        if not rows:
            return
        times = cast("list[datetime]", [row[_TRADE_TIME] for row in rows])
        first, last = min(times).astimezone(UTC).date(), max(times).astimezone(UTC).date()
        if (last - first).days > 31:  # a wide spread: only the days actually present
            days = {t.astimezone(UTC).date() for t in times}
        else:
            days = {first + timedelta(days=n) for n in range((last - first).days + 1)}
        today = partitions.today()
        missing = {
            day
            for day in days - self._known_days
            if abs((day - today).days) <= PARTITION_HORIZON_DAYS
        }  # days beyond the horizon stay in the default partition
        if missing:
            partitions.ensure_days(conn, missing)
            self._known_days |= missing

    def _commit(
        self, conn: Conn, tables: dict[str, list[Row]], positions: dict[tuple[str, int], int]
    ) -> Stored:
        """Write one batch (fast path, else merge path, else row by row); rows stored."""
        if self._merge_left == 0:
            try:
                return self._transaction(conn, tables, positions, merge=False)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                # Mostly a unique violation (a row exists): redo with the merge path, which
                # also salvages a batch PostgreSQL refuses for any other reason.
                _LOG.debug(
                    "shard %d: COPY refused (%s); merging for up to %d batches",
                    self._shard,
                    error_cause(exc),
                    MERGE_RUN,
                )
                self._merge_left = MERGE_RUN
        self._merge_left -= 1
        try:
            stored = self._transaction(conn, tables, positions, merge=True)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            _LOG.warning("batch refused by postgres (%s); writing it row by row", exc)
            return self._salvage(conn, tables, positions)
        if all(stored[table] == len(rows) for table, rows in tables.items()):
            self._merge_left = 0  # no conflict: back to the fast path
        return stored

    def _transaction(
        self,
        conn: Conn,
        tables: dict[str, list[Row]],
        positions: dict[tuple[str, int], int],
        *,
        merge: bool,
    ) -> Stored:
        """Write all tables and the progress in one transaction; rows inserted per table."""
        stored: Stored = {}
        if merge:  # outside the transaction: a rollback must not undo the staging table
            for table in tables.keys() - self._staged:
                conn.execute(TABLE_SQL[table].stage_create)
                self._staged.add(table)
        with conn.transaction(), conn.cursor() as cur:
            for table, rows in tables.items():
                statements = TABLE_SQL[table]
                with cur.copy(statements.stage_copy if merge else statements.copy) as copy:
                    copy.set_types(statements.types)
                    for row in rows:
                        copy.write_row(row)
                if merge:
                    cur.execute(statements.merge)
                stored[table] = cur.rowcount if merge else len(rows)
            self._record_progress(cur, positions)
        return stored

    def _record_progress(
        self, cur: psycopg.Cursor[tuple[object, ...]], positions: dict[tuple[str, int], int]
    ) -> None:
        """How far this shard has written each partition, in the batch's transaction."""
        cur.executemany(
            _UPSERT_PROGRESS, [(t, p, self._shard, o) for (t, p), o in positions.items()]
        )

    def _salvage(
        self, conn: Conn, tables: dict[str, list[Row]], positions: dict[tuple[str, int], int]
    ) -> Stored:
        """Row by row; a row PostgreSQL refuses becomes a reject with its values and the reason."""
        refused: list[Row] = []
        stored: Stored = dict.fromkeys((*tables, REJECTS_TABLE), 0)
        with conn.transaction(), conn.cursor() as cur:
            for table, rows in tables.items():
                for row in rows:
                    try:
                        with conn.transaction():
                            cur.execute(TABLE_SQL[table].insert_one, row)
                    except (psycopg.DataError, psycopg.IntegrityError) as exc:
                        if table == REJECTS_TABLE:
                            raise
                        refused.append(_refused_row(table, row, exc))
                    else:
                        stored[table] += cur.rowcount
            for row in refused:
                cur.execute(TABLE_SQL[REJECTS_TABLE].insert_one, row)
                stored[REJECTS_TABLE] += cur.rowcount
            self._record_progress(cur, positions)
        return stored


def _refused_row(table: str, row: Row, exc: Exception) -> Row:
    """The reject of an event row PostgreSQL refused: its values as JSON, and why."""
    layout, topic = LAYOUTS[table], TOPIC_OF_TABLE[table]
    partition, offset = cast("int", row[layout.partition]), cast("int", row[layout.offset])
    values = json.dumps(dict(zip(layout.columns, row, strict=True)), default=str)
    return reject_row(
        Rejected(
            topic=topic,
            partition=partition,
            offset=offset,
            dedupe_key=cast("str", row[layout.dedupe]),
            key=None,
            value=values.encode(),
            reason=refusal_reason(topic, partition, offset, f"postgres refused the row: {exc}"),
        )
    )
