-- How far each shard of the ingestion has durably written each Kafka partition.
--
-- The ingestion routes rows to shards by registry key, so the rows of one Kafka partition
-- are written by several shards (connections, possibly processes). Each shard upserts its
-- position here in the same transaction as its rows; the offset committed to the topic's
-- consumer group is the minimum over the shards, so Kafka tooling never shows as consumed
-- a message whose row is not yet committed.

CREATE TABLE rttm_ingest_progress (
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    shard           integer     NOT NULL,
    next_offset     bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, shard)
);
