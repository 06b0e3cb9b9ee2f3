"""``rttm db``: migrations and partition maintenance of the PostgreSQL schema."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta

import psycopg

from rttm.cli import Subcommands, add_command, say
from rttm.core import config
from rttm.core.db import partitions, prepare, roles
from rttm.core.db.connect import Conn, connect, describe, error_cause
from rttm.core.db.migrate import applied_versions, migrations
from rttm.core.errors import RttmError
from rttm.metrics import retention


def register(commands: Subcommands) -> None:
    """Add ``rttm db migrate|status|partitions|prune|grant-ingest|grant-viewer``."""
    db = commands.add_parser(
        "db",
        help="the PostgreSQL schema",
        description="Migrate, inspect and maintain the PostgreSQL schema of RTTM_DATABASE_URL "
        "(else the local stack's). `rttm db ACTION --help` tells more.",
    )
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_command(
        actions,
        "migrate",
        help="apply pending migrations (safe to repeat)",
        description="Apply the migrations the database has not had yet, in order, then create "
        "the trade-event day partitions around today. Safe to repeat.",
    ).set_defaults(run=_migrate)
    add_command(
        actions,
        "status",
        help="applied and pending migrations",
        description="List every migration with whether the database has it (applied) or not "
        "(pending).",
    ).set_defaults(run=_status)
    parts = add_command(
        actions,
        "partitions",
        help="create trade-event day partitions ahead, then list them",
        description="Create the missing day partitions of the trade-event table from --behind "
        "days before today to --ahead days after it, then list every partition with its "
        "estimated rows.",
    )
    parts.add_argument(
        "--ahead",
        type=int,
        default=partitions.DEFAULT_DAYS_AHEAD,
        help="days after today to prepare (default %(default)s)",
    )
    parts.add_argument(
        "--behind",
        type=int,
        default=partitions.DEFAULT_DAYS_BEHIND,
        help="days before today to prepare (default %(default)s)",
    )
    parts.set_defaults(run=_partitions)
    prune = add_command(
        actions,
        "prune",
        help="drop trade-event day partitions, metrics windows, ended alerts and stuck-trade "
        "rows past retention",
        description="Drop the trade-event day partitions older than --keep-days days before "
        "today and delete the metrics windows, ended alerts and stuck-trade rows before that "
        "day; --dry-run only shows what would go.",
    )
    prune.add_argument(
        "--keep-days",
        type=int,
        required=True,
        help="keep this many days before today (and everything after)",
    )
    prune.add_argument("--dry-run", action="store_true", help="only show what would be dropped")
    prune.set_defaults(run=_prune)
    grant = add_command(
        actions,
        "grant-ingest",
        help="grant an existing role exactly what the ingestion needs (least privilege)",
        description="Grant ROLE (create it first) exactly the privileges the ingestion needs, "
        "and print the statements run. Run it as the schema's owner.",
    )
    grant.add_argument("role", help="the role the ingestion logs in as (create it first)")
    grant.set_defaults(run=_grant_ingest)
    viewer = add_command(
        actions,
        "grant-viewer",
        help="grant an existing role SELECT on exactly what rttm serve, status, alerts and"
        " trace read (least privilege for readers)",
        description="Grant ROLE (create it first) SELECT on exactly what rttm serve, status, "
        "alerts and trace read, and print the statements run. Run it as the schema's owner.",
    )
    viewer.add_argument("role", help="the role the readers log in as (create it first)")
    viewer.set_defaults(run=_grant_viewer)


def migrate_and_report(url: str) -> None:
    """Apply pending migrations to ``url``, prepare partitions, and say what happened."""
    with connect(url, autocommit=True) as conn:
        applied, created = prepare(conn)
    where = describe(url)
    if applied:
        say(f"migrated {where}: applied {', '.join(m.path.name for m in applied)}")
    else:
        say(f"schema of {where} is up to date")
    if created:
        say(f"created trade-event partitions for {created[0]} .. {created[-1]}")


def _migrate(_args: argparse.Namespace) -> int:
    migrate_and_report(config.database_url())
    return 0


def _status(_args: argparse.Namespace) -> int:
    with connect(config.database_url(), autocommit=True) as conn:
        applied = applied_versions(conn)
    for migration in migrations():
        state = "applied" if migration.version in applied else "pending"
        print(f"{migration.version:04d}  {migration.name:<32} {state}")
    return 0


def _partitions(args: argparse.Namespace) -> int:
    with connect(config.database_url(), autocommit=True) as conn:
        created = partitions.ensure_ahead(conn, args.ahead, args.behind)
        listed = partitions.list_partitions(conn)
    say(f"created {len(created)} partition(s)")
    for part in listed:
        print(f"{part.name}  {part.day}  ~{part.estimated_rows} rows")
    return 0


#: The longest retention ``db prune`` accepts: a century of days, far before any data.
MAX_KEEP_DAYS = 36_500


def _prune(args: argparse.Namespace) -> int:
    if not 0 <= args.keep_days <= MAX_KEEP_DAYS:  # beyond, the cutoff date cannot exist
        msg = f"--keep-days must be between 0 and {MAX_KEEP_DAYS:,}"
        raise RttmError(msg)
    with connect(config.database_url(), autocommit=True) as conn:
        dropped = partitions.drop_older_than(conn, args.keep_days, dry_run=args.dry_run)
        cutoff = partitions.today() - timedelta(days=args.keep_days)
        results = retention.prune_results(conn, cutoff, dry_run=args.dry_run)
    verb = "would drop" if args.dry_run else "dropped"
    for part in dropped:
        print(f"{verb} {part.name}")
    say(f"{verb} {len(dropped)} partition(s) older than {args.keep_days} day(s)")
    for table, rows in results.items():
        say(
            f"{'would delete' if args.dry_run else 'deleted'} {rows:,} row(s) of {table}"
            f" before {cutoff}"
        )
    return 0


def _grant_ingest(args: argparse.Namespace) -> int:
    return _grant(args.role, roles.grant_ingest, "what the ingestion needs")


def _grant_viewer(args: argparse.Namespace) -> int:
    return _grant(args.role, roles.grant_viewer, "SELECT on what the readers read")


def _grant(role: str, grant: Callable[[Conn, str], list[str]], what: str) -> int:
    url = config.database_url()
    with connect(url, autocommit=True) as conn:
        try:
            statements = grant(conn, role)
        except psycopg.Error as exc:
            msg = f"cannot grant to role {role!r} on {describe(url)}: {error_cause(exc)}"
            raise RttmError(msg) from None
    for statement in statements:
        print(f"{statement};")
    say(f"granted role {role!r} {what} on {describe(url)}")
    return 0
