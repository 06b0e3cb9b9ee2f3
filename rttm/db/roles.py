"""The privileges the ingestion needs, and nothing more (``rttm db grant-ingest ROLE``).

The flow writes rows (``INSERT``, through ``COPY`` and ``ON CONFLICT DO NOTHING``), creates
temporary staging tables for its merge path, records, reads and tidies its own bookkeeping
(its progress, whose rows of removed shards or of a recreated topic it deletes, and the ids
of the topics it reads), creates day partitions through the owner's ``SECURITY DEFINER``
function (migration 0004), and reads which migrations are applied before it starts. It needs
no ``SELECT`` on the data, no ``UPDATE`` or ``DELETE`` on it, and no DDL.
"""

from __future__ import annotations

from psycopg import sql

from rttm.db.migrate import Conn
from rttm.registry import REJECTS_TABLE, TOPICS

#: Tables the ingestion only ever inserts into.
WRITE_ONLY = (*(spec.table for spec in TOPICS), REJECTS_TABLE)
PROGRESS_TABLE = "rttm_ingest_progress"
TOPIC_IDS_TABLE = "rttm_ingest_topics"
MIGRATIONS_TABLE = "rttm_schema_migrations"
PARTITION_FUNCTION = "rttm_ensure_trade_event_partition(date)"


def ingest_grants(database: str, schema: str, role: str) -> list[sql.Composed]:
    """The ``GRANT`` statements that let ``role`` run the ingestion, and only that."""
    who = sql.Identifier(role)
    tables = sql.SQL(", ").join(sql.Identifier(schema, table) for table in WRITE_ONLY)
    return [
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(database), who
        ),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), who),
        sql.SQL("GRANT INSERT ON {} TO {}").format(tables, who),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
            sql.Identifier(schema, PROGRESS_TABLE), who
        ),
        sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(
            sql.Identifier(schema, TOPIC_IDS_TABLE), who
        ),
        sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(schema, MIGRATIONS_TABLE), who),
        sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}").format(
            sql.Identifier(schema), sql.SQL(PARTITION_FUNCTION), who
        ),
    ]


def grant_ingest(conn: Conn, role: str) -> list[str]:
    """Apply :func:`ingest_grants` in the connection's database and schema; returns the SQL."""
    row = conn.execute("SELECT current_database(), current_schema()").fetchone()
    if row is None:  # pragma: no cover - the query always returns a row
        msg = "no current database"
        raise RuntimeError(msg)
    statements = ingest_grants(row[0], row[1], role)
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return [statement.as_string(conn) for statement in statements]
