"""What both flows share, below them.

Contracts, topics, decoding, configuration, the database (``db``), the Kafka source and
shards (``stream``), the metric catalogue, and the small plumbing every process needs
(logs, clean stops, durations, safe paths). Nothing here imports the flows
(``rttm.ingest``, ``rttm.metrics``, ``rttm.alerts``) or the operator's surface
(``rttm.cli``, ``rttm.web``, ``rttm.views``, ``rttm.ops``, ...): ``tests/test_layers.py``
checks it.
"""
