"""What both flows share: reading the ``rttm.*`` topics in batches, and sharding them.

Below the ingestion (``rttm.ingest``) and the metrics flow (``rttm.metrics``), which both
import from here and never from each other: the Kafka source and its read budget, the
shard of a key, and the source's counters (messages read, lag, polls) that both flows'
live lines, readiness probes and Prometheus ports show.
"""
