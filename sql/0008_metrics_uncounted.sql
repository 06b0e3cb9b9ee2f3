-- Events the metrics engine read but did not count (docs/guarantees.md "Metrics converge").
--
-- An event that arrives after its window is beyond the correction horizon
-- (RTTM_METRICS_CORRECTION) is counted in late_events and otherwise ignored; one dated too
-- far in the future is counted in future_events. The ingestion still stores both, so the
-- tables and the metrics differ by exactly these events: the metrics sink notes each one
-- here by its Kafka coordinates (the same kafka_partition and kafka_offset the ingestion
-- writes), and `rttm metrics verify` leaves them out when it recounts windows from the
-- tables. A replay notes the same keys again and changes nothing (ON CONFLICT DO NOTHING).
-- One row per such event, as the ingestion writes one: few unless a producer publishes
-- hours late or has a wrong clock. `rttm db prune` drops them by event_time or noted_at.
CREATE TABLE rttm_metrics_uncounted (
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    event_time      timestamptz NOT NULL,
    reason          text        NOT NULL CHECK (reason IN ('late', 'future')),
    noted_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset, event_time)
);
CREATE INDEX rttm_metrics_uncounted_time ON rttm_metrics_uncounted (event_time);

-- `rttm metrics verify` recounts windows of trade events by event time. A BRIN index is
-- small and nearly free to keep up while events arrive roughly in time order; the other
-- event tables already have a btree on event_time (0001).
CREATE INDEX rttm_trade_events_time_brin ON rttm_trade_events USING brin (event_time);
