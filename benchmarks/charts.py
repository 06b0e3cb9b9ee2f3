"""PNG charts of the benchmark results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from benchmarks.harness import Point, Result


def e2e(result: Result, path: Path) -> None:
    """Throughput of every contender against the limits; freshness distribution."""
    fresh = result.freshness
    fig, axes = plt.subplots(1, 2 if fresh else 1, figsize=(13 if fresh else 7, 4.5))
    ax = axes[0] if fresh else axes
    bars = [result.consume_limit, result.copy_limit, *result.runs]
    names = [r.name for r in bars]
    rates = [r.rate for r in bars]
    colours = ["#999999", "#999999"] + [
        "#1f77b4" if r.name.startswith("rttm") else "#ff7f0e" for r in result.runs
    ]
    ax.barh(names[::-1], rates[::-1], color=colours[::-1])
    for y, rate in enumerate(rates[::-1]):
        ax.text(rate, y, f" {rate:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("messages (rows) per second")
    ax.set_title("End-to-end ingestion vs limits (grey) and baselines")
    ax.set_xlim(0, max(rates) * 1.25)
    if fresh:
        ax2 = axes[1]
        ax2.hist(fresh.latencies_ms, bins=60, color="#1f77b4")
        for q, style in ((50, "--"), (99, ":")):
            value = fresh.percentile(q)
            ax2.axvline(value, color="black", linestyle=style, label=f"p{q} {value:.0f} ms")
        ax2.set_xlabel("produce → visible row (ms)")
        ax2.set_ylabel("probes")
        ax2.set_title(f"Freshness at {fresh.achieved:,.0f} events/s ({fresh.probes:,} probes)")
        ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scaling(points: list[Point], slices: list[tuple[int, float]], path: Path) -> None:
    """Events/s against workload size per worker count; rate per slice of the largest run."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    for workers in sorted({p.workers for p in points}):
        mine = sorted((p for p in points if p.workers == workers), key=lambda p: p.events)
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        events = [p.events for p in mine]
        ax.plot(events, [p.rate for p in mine], marker="o", label=f"{label} (wall clock)")
        ax.plot(
            events,
            [p.steady_rate for p in mine],
            marker="x",
            linestyle="--",
            label=f"{label} (steady)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("events ingested")
    ax.set_ylabel("events per second")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput against workload size")
    ax.legend()
    ax2.plot([rows / 1e6 for rows, _ in slices], [rate for _, rate in slices], marker="o")
    ax2.set_xlabel("rows in the tables at the end of the slice (millions)")
    ax2.set_ylabel("rows written per second")
    ax2.set_ylim(bottom=0)
    ax2.set_title("Write rate as the tables grow (largest run, 1 worker)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
