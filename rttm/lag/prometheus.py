"""The lag exporter's own counters on ``--metrics-port``: groups, snapshots, failures."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rttm.lag.exporter import LagExporter
from rttm_emit import Emitter


class LagExporterCollector(Collector):
    """Reads the exporter's and its producer's counters at each scrape."""

    def __init__(self, exporter: LagExporter, emitter: Emitter) -> None:
        self._exporter, self._emitter = exporter, emitter

    def collect(self) -> Iterator[Metric]:
        """The families of one scrape."""
        counters, sent = self._exporter.counters, self._emitter.counters
        with counters.lock:
            groups, partitions = counters.groups, counters.partitions
            rounds, failed_rounds = counters.rounds, counters.failed_rounds
        yield GaugeMetricFamily(
            "rttm_lag_exporter_groups", "Consumer groups reported in the last round", value=groups
        )
        yield GaugeMetricFamily(
            "rttm_lag_exporter_partitions",
            "Partitions reported in the last round",
            value=partitions,
        )
        yield CounterMetricFamily("rttm_lag_exporter_rounds", "Rounds of snapshots", value=rounds)
        yield CounterMetricFamily(
            "rttm_lag_exporter_snapshots",
            "Snapshots acknowledged by RTTM's broker",
            value=sent.sent,
        )
        failures = CounterMetricFamily(
            "rttm_lag_exporter_failures",
            "Rounds the source cluster failed (stage=source); snapshots not published"
            " (stage=publish)",
            labels=["stage"],
        )
        failures.add_metric(["source"], failed_rounds)
        failures.add_metric(["publish"], sent.failed + sent.dropped)
        yield failures


def register(exporter: LagExporter, emitter: Emitter) -> None:
    """Add the exporter's collector to the default registry (once per process)."""
    REGISTRY.register(LagExporterCollector(exporter, emitter))
