"""``rttm topics``: create and list the ``rttm.*`` topics."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rttm.cli import Subcommands, add_command, say
from rttm.core import kafka_topics
from rttm.core.config import KafkaSettings
from rttm.core.registry import TOPICS


def register(commands: Subcommands) -> None:
    """Add ``rttm topics create`` and ``rttm topics list``."""
    topics = commands.add_parser(
        "topics",
        help="the rttm.* Kafka topics",
        description="Create and list the rttm.* topics on RTTM_KAFKA_BROKERS (else the local "
        "stack's broker). `rttm topics ACTION --help` tells more.",
    )
    actions = topics.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = add_command(
        actions,
        "create",
        help="create missing topics (idempotent), then list",
        description="Create the rttm.* topics the broker does not have, with the partitions, "
        "retention and replication given (existing topics are left as they are), then list "
        "them all.",
    )
    add_topic_options(create)
    create.set_defaults(run=_create)
    listing = add_command(
        actions,
        "list",
        help="show partitions and end offsets",
        description="Show each rttm.* topic's partitions, messages and end offsets, and name "
        "the topics that are missing.",
    )
    listing.set_defaults(run=_list)


def add_topic_options(parser: argparse.ArgumentParser) -> None:
    """Options of topic creation, shared with ``rttm up``."""
    parser.add_argument(
        "--partitions",
        type=int,
        default=kafka_topics.DEFAULT_PARTITIONS,
        help="partitions of each new topic (default %(default)s)",
    )
    parser.add_argument(
        "--retention-days",
        type=float,
        default=kafka_topics.DEFAULT_RETENTION_DAYS,
        help="retention.ms of each new topic, in days (default %(default)s)",
    )
    parser.add_argument(
        "--replication",
        type=int,
        default=kafka_topics.DEFAULT_REPLICATION,
        help="replication factor of each new topic (default %(default)s)",
    )


def create_and_report(
    settings: KafkaSettings, args: argparse.Namespace, out: Callable[[str], None] = print
) -> None:
    """Create missing topics as ``args`` say and show what exists through ``out``."""
    created = kafka_topics.create_topics(
        settings, args.partitions, args.retention_days, args.replication
    )
    say(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    print_topics(settings, out)


def print_topics(settings: KafkaSettings, out: Callable[[str], None] = print) -> None:
    """A table of the registry's topics as they exist on the broker."""
    infos = kafka_topics.describe_topics(settings)
    out(f"{'TOPIC':<22} {'PARTITIONS':>10} {'MESSAGES':>10}  END OFFSETS")
    for info in infos:
        offsets = ",".join(str(o) for o in info.end_offsets)
        out(f"{info.name:<22} {info.partitions:>10} {info.messages:>10}  {offsets}")
    present = {info.name for info in infos}
    missing = [spec.name for spec in TOPICS if spec.name not in present]
    if missing:
        say(f"missing topics: {', '.join(missing)} (run `rttm topics create`)")


def _create(args: argparse.Namespace) -> int:
    create_and_report(KafkaSettings.from_env(), args)
    return 0


def _list(_args: argparse.Namespace) -> int:
    print_topics(KafkaSettings.from_env())
    return 0
