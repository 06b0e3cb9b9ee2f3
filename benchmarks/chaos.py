"""Chaos run: ``python -m benchmarks.chaos [--events N] [--kills 5] [--outages 2]``.

SIGKILLs of both flows and PostgreSQL outages at seeded random moments while a paced
producer sends a seeded workload; then every table against the ground truth
(:mod:`support.chaos` says what is observed and checked). Prints the report and exits 1 on
any difference. ``tests/test_chaos.py`` runs a small one.
"""

from __future__ import annotations

import argparse
import sys

from support.chaos import run


def main() -> None:
    """Run it (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos")
    parser.add_argument(
        "--events",
        type=int,
        default=200_000,
        help="messages produced at least (more while actions remain)",
    )
    parser.add_argument("--rate", type=float, default=4_000, help="messages/s produced")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--outages", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    report = run(args.events, args.kills, args.outages, args.seed, args.rate, (10.0, 30.0))
    print(report.render())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
