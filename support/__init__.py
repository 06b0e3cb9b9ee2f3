"""What the tests and the benchmarks share.

Seeded workloads and their ground truth, simulated platform runs as Kafka data, producer
floods, the chaos run. ``tests/`` and ``benchmarks/`` import it; it imports neither, and
``rttm`` never imports it.
"""
