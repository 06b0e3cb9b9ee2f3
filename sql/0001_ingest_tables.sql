-- RTTM ingestion tables: one per rttm.* topic (DESIGN §1) plus the rejects table.
--
-- Column rules (DESIGN §2–§3):
--  * payload fields keep their names, except the business-queue coordinates
--    partition -> queue_partition and offset -> queue_offset;
--  * provenance: dedupe_key, kafka_partition, kafka_offset, ingested_at;
--  * dedupe_key is the producer's event_id ("e:" prefix) or, without one, the rttm
--    message's topic/partition/offset/kafka-timestamp ("k:" prefix). It is unique per
--    table (with the partition column for the range-partitioned table), and writers use
--    ON CONFLICT DO NOTHING, so replays and redeliveries collapse to one row.
--
-- Partitioning. rttm_trade_events carries one row per trade per hop: by far the largest
-- table, queried by time, and pruned by age, so it is range-partitioned by day on
-- event_time (cheap retention by DROP, O(1) inserts as it grows, small per-day indexes).
-- The other tables are one to two orders of magnitude smaller (a queue snapshot per
-- consumer partition every few seconds, DLQ/error/log events only on faults, rejects only
-- on producer bugs); partitioning them would add planning cost and DDL churn for no gain
-- at that size. rttm_queue_metrics is the next candidate if snapshots become frequent.

CREATE TABLE rttm_trade_events (
    event_id        text,
    trade_id        text        NOT NULL,
    service_name    text        NOT NULL,
    event_type      text        NOT NULL,
    event_status    text        NOT NULL,
    source_queue    text,
    target_queue    text,
    topic_name      text,
    queue_partition integer     CHECK (queue_partition >= 0),
    queue_offset    bigint      CHECK (queue_offset >= 0),
    event_time      timestamptz NOT NULL,
    message         text,
    dedupe_key      text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dedupe_key, event_time)
) PARTITION BY RANGE (event_time);

-- Catches any event whose day has no partition yet, so an insert never fails; creating
-- that day's partition later moves its rows out (rttm_ensure_trade_event_partition).
CREATE TABLE rttm_trade_events_default PARTITION OF rttm_trade_events DEFAULT;

-- A trade's events in time order (trade trace).
CREATE INDEX rttm_trade_events_trade_time ON rttm_trade_events (trade_id, event_time);

CREATE TABLE rttm_queue_metrics (
    event_id        text,
    service_name    text        NOT NULL,
    topic_name      text        NOT NULL,
    queue_partition integer     NOT NULL CHECK (queue_partition >= 0),
    produced_offset bigint      NOT NULL CHECK (produced_offset >= 0),
    consumed_offset bigint      NOT NULL CHECK (consumed_offset >= 0),
    snapshot_time   timestamptz NOT NULL,
    dedupe_key      text        NOT NULL PRIMARY KEY,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now()
);

-- Latest lag per service/topic/partition: an index-only descent per group.
CREATE INDEX rttm_queue_metrics_latest
    ON rttm_queue_metrics (service_name, topic_name, queue_partition, snapshot_time DESC);
CREATE INDEX rttm_queue_metrics_time ON rttm_queue_metrics (snapshot_time);

CREATE TABLE rttm_dlq_events (
    event_id        text,
    trade_id        text        NOT NULL,
    service_name    text        NOT NULL,
    topic_name      text        NOT NULL,
    reason          text        NOT NULL,
    event_time      timestamptz NOT NULL,
    dedupe_key      text        NOT NULL PRIMARY KEY,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now()
);

-- DLQ depth and rate by time; a trade's DLQ entries (trace).
CREATE INDEX rttm_dlq_events_time ON rttm_dlq_events (event_time);
CREATE INDEX rttm_dlq_events_trade ON rttm_dlq_events (trade_id, event_time);

CREATE TABLE rttm_error_events (
    event_id        text,
    trade_id        text,
    service_name    text        NOT NULL,
    error_type      text        NOT NULL,
    error_message   text        NOT NULL,
    event_time      timestamptz NOT NULL,
    dedupe_key      text        NOT NULL PRIMARY KEY,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now()
);

-- Errors by time, per service by time, and a trade's errors (trace).
CREATE INDEX rttm_error_events_time ON rttm_error_events (event_time);
CREATE INDEX rttm_error_events_service_time ON rttm_error_events (service_name, event_time);
CREATE INDEX rttm_error_events_trade
    ON rttm_error_events (trade_id, event_time) WHERE trade_id IS NOT NULL;

CREATE TABLE rttm_parsed_logs (
    event_id        text,
    service_name    text        NOT NULL,
    log_level       text        NOT NULL,
    log_category    text        NOT NULL,
    trade_id        text,
    message         text        NOT NULL,
    event_time      timestamptz NOT NULL,
    dedupe_key      text        NOT NULL PRIMARY KEY,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now()
);

-- WARN/ERROR rates per service by time; a trade's log lines (trace).
CREATE INDEX rttm_parsed_logs_service_time ON rttm_parsed_logs (service_name, event_time);
CREATE INDEX rttm_parsed_logs_trade
    ON rttm_parsed_logs (trade_id, event_time) WHERE trade_id IS NOT NULL;

-- Messages that broke their contract, kept whole (raw bytes) with the reason, so nothing
-- consumed is ever lost. dedupe_key is always the Kafka-coordinates form.
CREATE TABLE rttm_ingest_rejects (
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    dedupe_key      text        NOT NULL PRIMARY KEY,
    raw_key         bytea,
    raw_value       bytea,
    reason          text        NOT NULL,
    rejected_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rttm_ingest_rejects_time ON rttm_ingest_rejects (rejected_at);
CREATE INDEX rttm_ingest_rejects_topic_time ON rttm_ingest_rejects (topic, rejected_at);
