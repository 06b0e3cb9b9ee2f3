"""``rttm up`` / ``rttm down``: the local broker and PostgreSQL for one machine."""

from __future__ import annotations

import argparse
import os
import shlex

from rttm import stack
from rttm.cli import Subcommands, add_command, say
from rttm.cli.db_commands import migrate_and_report
from rttm.cli.topic_commands import add_topic_options, create_and_report
from rttm.core import config
from rttm.core.config import KafkaSettings
from rttm.core.errors import RttmError


def register(commands: Subcommands) -> None:
    """Add ``rttm up``, ``rttm down`` and ``rttm env``."""
    up = add_command(
        commands,
        "up",
        help="start (or reuse) the local broker and PostgreSQL, migrate, create topics",
        description="Start the Tansu broker and, unless RTTM_DATABASE_URL is set, a local "
        "PostgreSQL; data lives in RTTM_STATE_DIR (default ~/.local/state/rttm). Prints the "
        'RTTM_* environment on stdout: eval "$(rttm up)".',
    )
    up.add_argument(
        "--kafka-port",
        type=int,
        default=stack.DEFAULT_KAFKA_PORT,
        help="preferred broker port on 127.0.0.1 (default %(default)s)",
    )
    up.add_argument(
        "--postgres-port",
        type=int,
        default=stack.DEFAULT_POSTGRES_PORT,
        help="preferred PostgreSQL port on 127.0.0.1 (default %(default)s)",
    )
    up.add_argument(
        "--no-init",
        action="store_true",
        help="only start the servers: no migration, no topic creation",
    )
    add_topic_options(up)
    up.set_defaults(run=_up)
    down = add_command(
        commands,
        "down",
        help="stop the local stack (data is kept)",
        description="Stop the broker and PostgreSQL that `rttm up` started in RTTM_STATE_DIR; "
        "their data is kept for the next `rttm up` unless --purge.",
    )
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the local PostgreSQL's data and password, and the logs",
    )
    down.set_defaults(run=_down)
    env = add_command(
        commands,
        "env",
        help="print the RTTM_* environment of the running stack",
        description="Print the export lines that point the CLI at the local stack running in "
        'RTTM_STATE_DIR: eval "$(rttm env)". Fails if no local stack runs.',
    )
    env.set_defaults(run=_env)


def print_env(env: dict[str, str]) -> None:
    """The ``export NAME=VALUE`` lines of ``env`` on stdout, shell-quoted (for eval)."""
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")


def _up(args: argparse.Namespace) -> int:
    state_dir = config.state_dir()
    # After `eval "$(rttm up)"` the variables name the local stack itself: not external.
    local = stack.running_stack(state_dir)
    local_env = local.env() if local is not None else {}
    external_kafka, external_db = (
        os.environ.get(name, "").strip() not in ("", local_env.get(name))
        for name in (config.ENV_BROKERS, config.ENV_DATABASE_URL)
    )
    say(f"state directory: {state_dir}")
    running = stack.up(
        state_dir,
        with_broker=not external_kafka,
        with_postgres=not external_db,
        kafka_port=args.kafka_port,
        postgres_port=args.postgres_port,
        say=say,
    )
    brokers = config.kafka_brokers() if external_kafka else running.kafka_brokers
    url = config.database_url() if external_db else running.database_url
    if not args.no_init:
        migrate_and_report(url)
        # Tables go to stderr here: stdout carries only the export lines, for eval.
        create_and_report(KafkaSettings(brokers=brokers, extra=config.kafka_config()), args, say)
    # Only the local servers in use: an external URL is the user's already (and may hold
    # a password, which stdout should not repeat).
    env = {config.ENV_BROKERS: brokers} if not external_kafka else {}
    if not external_db:
        env[config.ENV_DATABASE_URL] = url
    print_env(env)
    say(
        'ready. Next: eval "$(rttm env)" in your shell, then `rttm topics list`; '
        "`rttm down` stops the stack."
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    if not stack.down(config.state_dir(), say=say, purge=args.purge):
        say("no local stack recorded: nothing to stop")
    return 0


def _env(_args: argparse.Namespace) -> int:
    running = stack.running_stack(config.state_dir())
    if running is None:
        msg = "no local stack is running: start it with `rttm up`"
        raise RttmError(msg)
    print_env(running.env())
    return 0
