"""Apply the ordered SQL files of ``sql/`` once each, safely from concurrent processes."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from rttm.core.db.connect import Conn
from rttm.core.errors import RttmError

MIGRATIONS_TABLE = "rttm_schema_migrations"
#: Session advisory lock held while migrating: a second `rttm db migrate` waits, then
#: finds everything applied. The number is arbitrary but fixed ("rttm" in ASCII).
LOCK_ID = 0x7274_746D
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One SQL file: ``NNNN_name.sql``."""

    version: int
    name: str
    path: Path

    @property
    def sql(self) -> bytes:
        """The file's SQL text."""
        return self.path.read_bytes()

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, to notice a migration edited after it was applied."""
        return hashlib.sha256(self.sql).hexdigest()


def sql_dir() -> Path:
    """The migrations folder: packaged in a wheel as ``rttm/_sql``, else ``sql/`` in the repo."""
    package = Path(__file__).resolve().parents[2]  # rttm/core/db/migrate.py: rttm/
    packaged = package / "_sql"
    return packaged if packaged.is_dir() else package.parent / "sql"


def migrations(folder: Path | None = None) -> list[Migration]:
    """The migrations in ``folder`` (default :func:`sql_dir`), in version order."""
    folder = folder or sql_dir()
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            msg = f"{path}: migration files must be named NNNN_name.sql"
            raise RttmError(msg)
        found.append(Migration(int(match[1]), match[2], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        msg = f"{folder}: two migrations share a version number"
        raise RttmError(msg)
    return found


def applied_versions(conn: Conn) -> dict[int, str]:
    """Applied migration versions and their checksums (empty before the first migrate)."""
    if conn.execute("SELECT to_regclass(%s)", (MIGRATIONS_TABLE,)).fetchone() == (None,):
        return {}
    rows = conn.execute("SELECT version, checksum FROM rttm_schema_migrations").fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def migrate(conn: Conn, folder: Path | None = None) -> list[Migration]:
    """Apply every migration not applied yet, each in its own transaction.

    Args:
        conn: an autocommit connection (transactions are opened here).
        folder: migrations folder, default :func:`sql_dir`.

    Returns:
        The migrations applied now (empty when the schema was up to date).

    Raises:
        RttmError: a migration failed, or an applied one was edited afterwards.
    """
    pending = migrations(folder)
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS rttm_schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = applied_versions(conn)
        done: list[Migration] = []
        for migration in pending:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    msg = (
                        f"migration {migration.path.name} was changed after it was applied;"
                        " add a new migration instead"
                    )
                    raise RttmError(msg)
                continue
            try:
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO rttm_schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
            except psycopg.Error as exc:
                msg = f"migration {migration.path.name} failed: {exc}"
                raise RttmError(msg) from exc
            done.append(migration)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
