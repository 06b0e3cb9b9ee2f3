"""The metrics flow's own progress for Prometheus, from :mod:`rttm.metrics.stats`.

Served by ``rttm metrics --metrics-port PORT`` (127.0.0.1), or by Bytewax's API server when
``BYTEWAX_DATAFLOW_API_ENABLED=true`` (``dataflows/metrics.py`` registers it).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rttm.metrics.stats import COUNTERS


class MetricsFlowCollector(Collector):
    """Events read and windows finalized since the process started; the engine's view."""

    def collect(self) -> Iterator[Metric]:
        """Counters, then gauges (the watermark only once a window was finalized)."""
        yield CounterMetricFamily(
            "rttm_metrics_events_read", "Messages the metrics flow read", value=COUNTERS.events
        )
        yield CounterMetricFamily(
            "rttm_metrics_windows_finalized", "Windows written", value=COUNTERS.windows
        )
        for name, about, value in (
            (
                "rttm_metrics_late_corrected",
                "Late events added to their closed window",
                COUNTERS.corrected,
            ),
            (
                "rttm_metrics_late_uncounted",
                "Events past the correction horizon, not counted",
                COUNTERS.late,
            ),
            (
                "rttm_metrics_repeats_dropped",
                "Repeated deliveries of an event_id, dropped",
                COUNTERS.repeated,
            ),
            (
                "rttm_metrics_windows_corrected",
                "Closed windows rewritten with late events",
                COUNTERS.corrections,
            ),
        ):
            yield CounterMetricFamily(name, about, value=value)
        yield GaugeMetricFamily(
            "rttm_metrics_stuck_trades_open",
            "Trades stuck in the newest window",
            value=COUNTERS.stuck_open,
        )
        yield GaugeMetricFamily(
            "rttm_metrics_alerts_firing", "Alerts firing", value=COUNTERS.alerts_firing
        )
        yield _per_label(
            "rttm_series_dropped",
            "Label sets folded into __other__ by the series cap",
            "metric",
            COUNTERS.series_dropped,
        )
        yield _per_label(
            "rttm_alerts_folded",
            "Series watched as one __other__ alert by the per-rule cap",
            "rule",
            COUNTERS.alerts_folded,
        )
        yield _per_label(
            "rttm_metrics_state_evicted",
            "Trades and queue partitions let go for space",
            "state",
            COUNTERS.evicted,
        )
        if COUNTERS.watermark is not None:
            yield GaugeMetricFamily(
                "rttm_metrics_watermark_seconds",
                "Event time up to which every window is final (Unix seconds)",
                value=COUNTERS.watermark,
            )


def _per_label(name: str, about: str, label: str, counts: dict[str, int]) -> Metric:
    """A counter family with one sample per value of ``label``."""
    family = CounterMetricFamily(name, about, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


_COLLECTOR = MetricsFlowCollector()


@functools.cache  # once per process: the registry refuses a second time
def register() -> None:
    """Add the collector to the default registry."""
    REGISTRY.register(_COLLECTOR)
