"""``rttm lag-exporter``: consumer groups' lag read from the outside, as RTTM snapshots.

A Kafka cluster knows each consumer group's committed offsets and each partition's end, so
lag needs no code in the consumers: the exporter reads both and publishes
``rttm.queue.metrics`` snapshots, which the metrics flow turns into queue lag, consumer
status and time to data loss like any service's own (:mod:`rttm.queue_reporter`).

* :mod:`rttm.lag.offsets`: groups, committed offsets and end offsets from one cluster;
* :mod:`rttm.lag.exporter`: which groups to watch, one round of snapshots, its counters.
"""
