"""Least privilege: what the ingestion and the readers need, and nothing more.

``rttm db grant-ingest ROLE``: the flow writes rows (``INSERT``, through ``COPY`` and ``ON
CONFLICT DO NOTHING``), creates temporary staging tables for its merge path, records, reads
and tidies its own bookkeeping (its progress, whose rows of removed shards or of a recreated
topic it deletes, and the ids of the topics it reads), creates day partitions through the
owner's ``SECURITY DEFINER`` function (migration 0004), and reads which migrations are
applied before it starts. It needs no ``SELECT`` on the data, no ``UPDATE`` or ``DELETE``
on it, and no DDL.

``rttm db grant-viewer ROLE``: the readers — ``rttm serve`` (its page, API and
``/metrics``) and ``rttm status``, ``alerts`` and ``trace`` — read the metrics, alerts,
their outbox, stuck trades, the event tables a trace shows and the ingestion's progress; the
rejects gauge reads the planner's estimate from ``pg_class``, which needs no grant.
:func:`write_access` tells a reader that it could write, so that ``rttm serve`` can refuse
to face the network with such a role.
"""

from __future__ import annotations

from collections.abc import Callable

from psycopg import sql

from rttm.core.db.connect import Conn
from rttm.core.registry import BY_NAME, REJECTS_TABLE, TOPICS

#: Tables the ingestion only ever inserts into.
WRITE_ONLY = (*(spec.table for spec in TOPICS), REJECTS_TABLE)
PROGRESS_TABLE = "rttm_ingest_progress"
TOPIC_IDS_TABLE = "rttm_ingest_topics"
MIGRATIONS_TABLE = "rttm_schema_migrations"
PARTITION_FUNCTION = "rttm_ensure_trade_event_partition(date)"
#: What the readers select from: metrics, alerts and stuck trades (migrations 0005, 0007),
#: the events the metrics did not count (0008, for ``rttm metrics verify``), the counters
#: of ``/metrics`` (0009), the tables a trace shows, the queue snapshots (the offsets of
#: ``/metrics``), and the ingestion's progress (``rttm_ingest_position``).
VIEWER_TABLES = (
    "rttm_metrics",
    "rttm_alerts",
    "rttm_alert_outbox",
    "rttm_stuck_trades",
    "rttm_metrics_uncounted",
    "rttm_metrics_totals",
    *(
        BY_NAME[topic].table
        for topic in (
            "rttm.trade.events",
            "rttm.dlq.events",
            "rttm.error.events",
            "rttm.log.events",
            "rttm.queue.metrics",
        )
    ),
    PROGRESS_TABLE,
)
#: A table privilege that changes data.
_WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")


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
    return _apply(conn, ingest_grants, role)


def viewer_grants(database: str, schema: str, role: str) -> list[sql.Composed]:
    """The ``GRANT`` statements that let ``role`` read what the views read, and only that."""
    who = sql.Identifier(role)
    tables = sql.SQL(", ").join(sql.Identifier(schema, table) for table in VIEWER_TABLES)
    return [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), who),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), who),
        sql.SQL("GRANT SELECT ON {} TO {}").format(tables, who),
    ]


def grant_viewer(conn: Conn, role: str) -> list[str]:
    """Apply :func:`viewer_grants` in the connection's database and schema; returns the SQL."""
    return _apply(conn, viewer_grants, role)


def _apply(
    conn: Conn, grants: Callable[[str, str, str], list[sql.Composed]], role: str
) -> list[str]:
    """The statements of ``grants`` for ``role``, in one transaction; returns their SQL."""
    database, schema = _where(conn)
    statements = grants(database, schema, role)
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return [statement.as_string(conn) for statement in statements]


def write_access(conn: Conn) -> list[str]:
    """What the connection's role could change: ``superuser``, or ``PRIVILEGE on TABLE``.

    Empty for a role made with ``grant-viewer`` (every ``rttm_`` table of the schema is
    checked, the privileges granted to ``PUBLIC`` included).
    """
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if row is not None and row[0]:
        return ["superuser"]
    found = conn.execute(
        "SELECT c.relname, p.privilege FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()"
        " CROSS JOIN unnest(%s::text[]) AS p(privilege)"
        " WHERE c.relkind IN ('r', 'p') AND c.relname LIKE 'rttm%%'"
        " AND NOT c.relispartition AND has_table_privilege(c.oid, p.privilege)"
        " ORDER BY c.relname, p.privilege",
        (list(_WRITES),),
    ).fetchall()
    return [f"{privilege} on {table}" for table, privilege in found]


def _where(conn: Conn) -> tuple[str, str]:
    row = conn.execute("SELECT current_database(), current_schema()").fetchone()
    if row is None:  # pragma: no cover - the query always returns a row
        msg = "no current database"
        raise RuntimeError(msg)
    return str(row[0]), str(row[1])
