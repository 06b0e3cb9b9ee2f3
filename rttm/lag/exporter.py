"""Which consumer groups the lag exporter watches, and one round of their snapshots.

A round reads every watched group's committed offsets, the partitions of the topics it has
committed on, and each partition's start and end (:mod:`rttm.lag.offsets`), then publishes
one ``rttm.queue.metrics`` snapshot per (group, partition) to RTTM's cluster:
``produced_offset`` is the partition's end, ``consumed_offset`` the group's committed
offset, or the partition's start where the group has committed nothing on it yet.

Groups are named (``--group GROUP=SERVICE``) or found by a pattern (``--group-regex``,
matched against the whole group id, asked again every round so that new groups are picked
up). A group with no committed offsets left (deleted, or its offsets expired) is said once
and no longer reported; a named one is reported again when it commits again. A group that
is merely empty (no members) keeps its committed offsets and stays reported: a consumer
that stopped is what lag and consumer status are for.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rttm.core.config import KafkaSettings
from rttm.core.contracts import QueueMetrics
from rttm.core.errors import RttmError
from rttm.lag.offsets import EndOffsets, Partition, SourceError, committed, groups, partitions
from rttm_emit import EmitCounters, Emitter, uuid7

_LOG = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 10.0
#: Seconds a round waits for RTTM's broker to acknowledge its snapshots.
FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Watch:
    """The groups to watch: named ones (group → service shown) and a pattern for more."""

    named: Mapping[str, str]
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(
        cls,
        named: Sequence[str],
        pattern: str | None,
        where: tuple[str, str] = ("--group", "--group-regex"),
    ) -> Watch:
        """From ``GROUP[=SERVICE]`` texts and a regular expression, refusing in one line.

        ``where`` names the two settings in messages (the flags, or the variables).

        Raises:
            RttmError: a ``GROUP=SERVICE`` without a group or a service, or a pattern that
                does not compile.
        """
        groups: dict[str, str] = {}
        for text in named:
            group, sep, service = (part.strip() for part in text.partition("="))
            if not group or (sep and not service):
                msg = f"{where[0]} {text!r}: expected GROUP or GROUP=SERVICE"
                raise RttmError(msg)
            groups[group] = service or group
        compiled = None
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                msg = f"{where[1]} {pattern!r}: {exc}"
                raise RttmError(msg) from None
        if not groups and compiled is None:
            msg = f"no consumer groups to watch: give {where[0]} GROUP[=SERVICE] or {where[1]}"
            raise RttmError(msg)
        return cls(groups, compiled)


@dataclass
class ExporterCounters:
    """What the exporter has done, for its live line and ``--metrics-port``."""

    rounds: int = 0
    failed_rounds: int = 0
    groups: int = 0  # groups watched in the last round (named, and found by the pattern)
    partitions: int = 0  # snapshots of the last round
    snapshots: int = 0  # handed to the producer, every round
    last_error: str = ""  # why the last round failed ("" : it did not)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _now() -> datetime:
    return datetime.now(UTC)


class LagExporter:
    """Snapshots of the watched groups on the ``source`` cluster, published by ``emitter``.

    ``clock`` dates the snapshots (the wall clock; a test replays a stretch of time).
    """

    def __init__(
        self,
        source: KafkaSettings,
        emitter: Emitter,
        watch: Watch,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        try:
            self._admin = AdminClient(source.client_config())
        except (KafkaException, ValueError, TypeError) as exc:  # librdkafka refused a setting
            raise source.rejected(exc) from None
        self._ends = EndOffsets(source)
        self._emitter, self._watch, self._clock = emitter, watch, clock
        self._reported: set[str] = set()  # groups reported in the last round
        self._missing: set[str] = set()  # named groups said to have no offsets
        self.counters = ExporterCounters()

    def round(self) -> list[QueueMetrics]:
        """Read every watched group now and publish its snapshots; returns them.

        Raises:
            rttm.lag.offsets.SourceError: the source cluster did not answer; nothing of
                this round is published.
        """
        try:
            watched, snapshots = self._snapshots()
        except SourceError as exc:
            with self.counters.lock:
                self.counters.rounds += 1
                self.counters.failed_rounds += 1
                self.counters.last_error = str(exc)
            raise
        for snapshot in snapshots:
            self._emitter.emit(snapshot)
        # Serves the delivery reports, so "acknowledged" counts are current; bounded, as a
        # broker that is away holds the snapshots in the producer's queue meanwhile.
        self._emitter.flush(FLUSH_TIMEOUT_S)
        with self.counters.lock:
            self.counters.rounds += 1
            self.counters.groups = len(watched)
            self.counters.partitions = len(snapshots)
            self.counters.snapshots += len(snapshots)
            self.counters.last_error = ""
        return snapshots

    def close(self) -> None:
        """Leave the source cluster (the emitter is the caller's to close)."""
        self._ends.close()

    def _watched(self) -> dict[str, str]:
        """Group → service for this round: the named groups, and the pattern's."""
        watched = dict(self._watch.named)
        if self._watch.pattern is not None:
            for group in groups(self._admin):
                if group not in watched and self._watch.pattern.fullmatch(group):
                    watched[group] = group
        return watched

    def _snapshots(self) -> tuple[dict[str, str], list[QueueMetrics]]:
        """The groups watched this round, and their snapshots."""
        watched = self._watched()
        offsets = committed(self._admin, sorted(watched))
        topics = {topic for found in offsets.values() for topic, _ in found}
        layout = partitions(self._admin, topics)
        marks = self._ends.read((topic, p) for topic, numbers in layout.items() for p in numbers)
        self._note({group for group, found in offsets.items() if found}, watched)
        now = self._clock()
        snapshots = []
        for group, found in offsets.items():
            for topic in sorted({topic for topic, _ in found}):
                for number in layout.get(topic, ()):
                    key: Partition = (topic, number)
                    if key not in marks:
                        continue
                    start, end = marks[key]
                    consumed = found.get(key, start)
                    snapshots.append(
                        QueueMetrics(
                            service_name=watched[group],
                            topic_name=topic,
                            partition=number,
                            produced_offset=end,
                            consumed_offset=max(min(consumed, end), 0),
                            snapshot_time=now,
                            event_id=uuid7(),
                        )
                    )
        return watched, snapshots

    def _note(self, alive: set[str], watched: Mapping[str, str]) -> None:
        """Say once when a group starts being reported, stops, or has nothing to report."""
        for group in sorted(alive - self._reported):
            _LOG.info("reporting consumer group %s as service %s", group, watched[group])
        for group in sorted(self._reported - alive):
            _LOG.warning(
                "consumer group %s is gone or has no committed offsets left: no longer reported",
                group,
            )
        missing = set(self._watch.named) - alive
        for group in sorted(missing - self._missing - self._reported):
            _LOG.warning(
                "consumer group %s has no committed offsets: nothing to report until it commits",
                group,
            )
        self._reported, self._missing = alive, missing


def summary(counters: ExporterCounters, sent: EmitCounters) -> str:
    """One line of what the exporter did (``sent``: its producer's counters)."""
    with counters.lock:
        failed = f", {counters.failed_rounds} failed" if counters.failed_rounds else ""
        lost = sent.failed + sent.dropped
        unsent = f", {lost:,} not published" if lost else ""
        return (
            f"{counters.snapshots:,} snapshots in {counters.rounds:,} rounds{failed}, "
            f"{sent.sent:,} acknowledged{unsent}; last round: {counters.groups} groups, "
            f"{counters.partitions} partitions"
        )
