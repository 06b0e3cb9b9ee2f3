"""RTTM: real-time trade monitoring for Kafka trade pipelines, stored in PostgreSQL.

The packages, from the bottom up (no module imports from a layer above its own):

* ``core``: what both flows share (contracts, topics, decoding, config, db, Kafka source);
* ``ingest``: the ingestion flow; ``metrics`` and ``alerts``: the metrics flow. The two
  flows never import each other;
* the operator's surface: ``cli``, ``web``, ``views``, ``ops``, ``lag`` (``rttm
  lag-exporter``), ``stack`` (the local broker and PostgreSQL), ``simulator``.

``emit`` and ``queue_reporter`` are what a business service imports (``emit`` re-exports
the ``rttm-emit`` package).
"""

__version__ = "0.1.0"
