"""Every environment variable RTTM reads: who reads it, what it means, its default.

One table, :data:`SETTINGS`, is the source of the ``environment:`` list at the end of each
command's ``--help`` (:func:`epilog`) and of the README's "Configuration" table
(``tests/test_cli_help.py`` checks both against it, and that every ``RTTM_*`` name in the
code is here). The names and defaults are the constants of the modules that read them.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from rttm.alerts import receivers
from rttm.cli import lag_commands, metrics_access, serve_security
from rttm.core import config, flow_settings, logs
from rttm.ingest import chunks, dedupe
from rttm.ingest import settings as ingest
from rttm.metrics import settings as metrics
from rttm.metrics.limits import (
    ENV_MAX_ALERTS,
    ENV_MAX_DLQ_REASONS,
    ENV_MAX_IDS,
    ENV_MAX_PARTITIONS,
    ENV_MAX_SERIES,
    ENV_MAX_TRADES,
    Limits,
)
from rttm.ops import cluster, supervisor
from rttm.views import limits as views
from rttm.views.budget import DEFAULT_BUDGET_S

#: Every command that runs something, as typed after ``rttm`` (the groups ``db``,
#: ``topics``, ``schema`` and ``rules`` only hold these).
COMMANDS = (
    "up",
    "down",
    "env",
    "db migrate",
    "db status",
    "db partitions",
    "db prune",
    "db grant-ingest",
    "db grant-viewer",
    "topics create",
    "topics list",
    "simulate",
    "ingest",
    "metrics",
    "metrics verify",
    "schema export",
    "trace",
    "status",
    "alerts",
    "alerts silence",
    "serve",
    "run",
    "demo",
    "lag-exporter",
    "rules check",
    "rules test",
    "rules export",
)

_DB = ("db migrate", "db status", "db partitions", "db prune", "db grant-ingest", "db grant-viewer")
_TOPICS = ("topics create", "topics list")
#: The commands that use the local stack of ``rttm up`` when a server is not named.
_LOCAL_STACK = (
    "up",
    "down",
    "env",
    *_DB,
    *_TOPICS,
    "simulate",
    "ingest",
    "metrics",
    "metrics verify",
    "trace",
    "status",
    "alerts",
    "serve",
    "demo",
)
_KAFKA = ("up", *_TOPICS, "simulate", "ingest", "metrics", "run", "lag-exporter")
_DATABASE = (
    "up",
    *_DB,
    "ingest",
    "metrics",
    "metrics verify",
    "trace",
    "status",
    "alerts",
    "serve",
    "run",
)
#: The engine's settings: the metrics flow, ``rttm metrics verify`` (which recounts with
#: them) and ``rttm run`` (whose metrics flow reads them).
_ENGINE = ("metrics", "metrics verify", "run")
_FLOWS = ("ingest", "metrics", "run")
_LOW, _HIGH = views.MAX_ENTRIES_RANGE
_ENTRIES = f"entries per list, the rest counted (--max-entries, {_LOW}-{_HIGH:,})"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, the commands that read it, meaning, default."""

    name: str
    commands: tuple[str, ...]
    meaning: str
    default: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        config.ENV_BROKERS,
        _KAFKA,
        "Kafka bootstrap servers, comma list",
        "the local stack's broker",
    ),
    Setting(
        config.ENV_DATABASE_URL, _DATABASE, "PostgreSQL libpq URL", "the local stack's PostgreSQL"
    ),
    Setting(
        config.ENV_KAFKA_CONFIG,
        _KAFKA,
        "file of extra librdkafka settings (key=value lines: TLS, SASL)",
        "none",
    ),
    Setting(
        config.ENV_STATE_DIR,
        _LOCAL_STACK,
        "where `rttm up` keeps data, logs and stack.json (the demo: its demo/ subdirectory)",
        "$XDG_STATE_HOME/rttm, else ~/.local/state/rttm",
    ),
    Setting(
        ingest.ENV_TOPICS,
        ("ingest", "run"),
        "comma list: ingest only these topics (--topics)",
        "all of them",
    ),
    Setting(
        flow_settings.ENV_TAIL,
        _FLOWS,
        "1 keeps following; 0 stops once every partition is read to its end",
        "1",
    ),
    Setting(
        ingest.ENV_DEDUPE_CAPACITY,
        ("ingest", "run"),
        "dedupe keys remembered per shard, all tables together (~21 MB per 200,000)",
        f"{dedupe.DEFAULT_CAPACITY:,}",
    ),
    Setting(
        ingest.ENV_SHARDS,
        ("ingest", "run"),
        f"ingestion shards = database connections and sink partitions (1-{ingest.MAX_SHARDS})",
        str(chunks.DEFAULT_SHARDS),
    ),
    Setting(
        metrics.ENV_PIPELINE,
        (*_ENGINE, "trace", "serve"),
        "pipeline definition file (stages, event types, terminal types, stuck_after)",
        "the shipped one (docs/design.md §5.3)",
    ),
    Setting(
        metrics.ENV_ALERT_RULES,
        ("metrics", "run", "rules export"),
        "alert rules file",
        "the shipped rules",
    ),
    Setting(
        metrics.ENV_WINDOW,
        (*_ENGINE, "rules export"),
        "metrics window length",
        metrics.DEFAULT_WINDOW,
    ),
    Setting(
        metrics.ENV_LATENESS,
        _ENGINE,
        "allowed lateness of an event (event time)",
        metrics.DEFAULT_LATENESS,
    ),
    Setting(
        metrics.ENV_CORRECTION,
        _ENGINE,
        "how far back (event time) a late event still corrects its closed window;"
        " `rttm metrics verify` checks the windows older than this",
        metrics.DEFAULT_CORRECTION,
    ),
    Setting(
        metrics.ENV_SHARDS,
        _ENGINE,
        "metrics engine shards (trades by id, queues by partition)",
        str(metrics.DEFAULT_SHARDS),
    ),
    Setting(
        ENV_MAX_SERIES,
        _ENGINE,
        "label sets per metric per window; the rest are added into `__other__`",
        f"{Limits().series:,}",
    ),
    Setting(
        ENV_MAX_DLQ_REASONS, _ENGINE, "named DLQ reasons per topic", f"{Limits().dlq_reasons:,}"
    ),
    Setting(ENV_MAX_ALERTS, _ENGINE, "active alerts per rule", f"{Limits().alerts_per_rule:,}"),
    Setting(
        ENV_MAX_TRADES,
        _ENGINE,
        "in-flight trades tracked, all shards together",
        f"{Limits().trades:,}",
    ),
    Setting(
        ENV_MAX_PARTITIONS,
        _ENGINE,
        "queue partitions tracked, all shards together",
        f"{Limits().partitions:,}",
    ),
    Setting(
        ENV_MAX_IDS,
        _ENGINE,
        "event ids remembered to drop repeated deliveries",
        f"{Limits().ids:,}",
    ),
    Setting(
        receivers.ENV_ALERTMANAGER,
        ("metrics", "alerts", "alerts silence", "serve", "run"),
        "Alertmanager(s) for alerts and silences, comma list",
        "none",
    ),
    Setting(
        receivers.ENV_WEBHOOK,
        ("metrics", "run"),
        "webhook for Alertmanager-format notifications",
        "none",
    ),
    Setting(
        receivers.ENV_WEBHOOK_SECRET,
        ("metrics", "run"),
        "HMAC key of the webhook's signature",
        "none",
    ),
    Setting(
        receivers.ENV_DASHBOARD,
        ("metrics", "run"),
        "the dashboard's address, for links in alerts",
        "none",
    ),
    Setting(
        receivers.ENV_HORIZON,
        ("metrics", "run"),
        "alert transitions older than this are stored, not sent",
        receivers.DEFAULT_HORIZON,
    ),
    Setting(
        receivers.ENV_RESEND,
        ("metrics", "run"),
        "how often firing alerts are sent again",
        receivers.DEFAULT_RESEND,
    ),
    Setting(
        views.ENV_MAX_ENTRIES,
        ("status", "alerts", "serve", "run"),
        _ENTRIES,
        str(views.DEFAULT_MAX_ENTRIES),
    ),
    Setting(
        views.ENV_MAX_SERIES,
        ("serve", "run"),
        "series per metric on /metrics (--max-series)",
        f"{views.DEFAULT_MAX_SERIES:,}",
    ),
    Setting(
        views.ENV_REQUEST_BUDGET,
        ("serve", "run"),
        "seconds a view request may take (--request-budget)",
        f"{DEFAULT_BUDGET_S:g}",
    ),
    Setting(
        serve_security.ENV_AUTH_FILE,
        ("serve", "run"),
        "dashboard users: htpasswd file of bcrypt entries, mode 600 (--auth-file)",
        "none",
    ),
    Setting(
        serve_security.ENV_TOKEN_FILE,
        ("serve", "run"),
        "dashboard bearer tokens: NAME:SHA256-HEX lines, mode 600 (--token-file)",
        "none",
    ),
    Setting(
        metrics_access.ENV_AUTH_FILE,
        (*_FLOWS, "lag-exporter"),
        "who may scrape --metrics-port beyond loopback: htpasswd (--metrics-auth-file)",
        "none",
    ),
    Setting(
        metrics_access.ENV_TOKEN_FILE,
        (*_FLOWS, "lag-exporter"),
        "bearer tokens for --metrics-port beyond loopback (--metrics-token-file)",
        "none",
    ),
    Setting(
        lag_commands.ENV_GROUPS,
        ("lag-exporter", "run"),
        "comma list of consumer groups to watch, GROUP[=SERVICE] (--group)",
        "none",
    ),
    Setting(
        lag_commands.ENV_GROUP_REGEX,
        ("lag-exporter", "run"),
        "also watch every consumer group whose id matches (--group-regex)",
        "none",
    ),
    Setting(logs.ENV_LEVEL, COMMANDS, f"lowest level logged: {', '.join(logs.LEVELS)}", "INFO"),
    Setting(
        logs.ENV_FORMAT,
        COMMANDS,
        "log lines as text or json (one object per line)",
        logs.FORMATS[0],
    ),
    Setting(
        cluster.ENV_PEER_TIMEOUT,
        _FLOWS,
        "a cluster process: seconds to wait for its peers (--peer-timeout)",
        f"{cluster.DEFAULT_PEER_TIMEOUT_S:g}",
    ),
    Setting(
        cluster.ENV_PROCESS_ID,
        ("ingest", "metrics"),
        "a cluster process: its index in the addresses (-i)",
        "alone",
    ),
    Setting(
        cluster.ENV_ADDRESSES,
        ("ingest", "metrics"),
        "a cluster process: every process's address, ';' list (-a)",
        "alone",
    ),
    Setting(
        cluster.ENV_POD_NAME,
        ("ingest", "metrics"),
        "in Kubernetes, with the next: the process index, as bytewax.run",
        "none",
    ),
    Setting(
        cluster.ENV_STATEFULSET_NAME,
        ("ingest", "metrics"),
        "in Kubernetes: the StatefulSet of the pods, as bytewax.run",
        "none",
    ),
    Setting(
        supervisor.ENV_SUPERVISOR,
        (),
        "internal: set by `rttm run` in its children, which stop when it dies",
        "unset",
    ),
)

#: Width of ``--help`` lines, within the ~100 columns of a terminal.
WIDTH = 96


def for_command(command: str) -> tuple[Setting, ...]:
    """The settings ``rttm COMMAND`` reads (``command`` as in :data:`COMMANDS`)."""
    return tuple(setting for setting in SETTINGS if command in setting.commands)


def epilog(command: str) -> str | None:
    """The ``environment:`` list of ``rttm COMMAND --help``, or None if it reads none.

    Lines are broken here (the help formatter keeps a text with line breaks as it is).
    """
    settings = for_command(command)
    if not settings:
        return None
    lines = ["environment (README.md, Configuration):"]
    for setting in settings:
        lines.append(f"  {setting.name} (default: {setting.default})")
        lines += textwrap.wrap(
            setting.meaning, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6
        )
    return "\n".join(lines) + "\n"
