"""PostgreSQL side of RTTM: connections, migrations, partition maintenance."""

from __future__ import annotations

from datetime import date

from rttm.core.db import partitions
from rttm.core.db.connect import Conn
from rttm.core.db.migrate import Migration, migrate


def prepare(conn: Conn) -> tuple[list[Migration], list[date]]:
    """Bring a database to the current schema: pending migrations, then partitions ahead.

    Returns the migrations applied and the days whose partitions were created.
    """
    return migrate(conn), partitions.ensure_ahead(conn)
