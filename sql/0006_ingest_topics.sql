-- The id of each topic the ingestion read, as the broker reported it (Kafka >= 2.8).
--
-- A topic that is deleted and created again keeps its name but gets a new id, and its
-- offsets start again from 0. Before it starts, the ingestion compares the ids here with
-- the broker's: a topic whose id changed has the positions stored for it in
-- rttm_ingest_progress dropped, so it is read from its beginning instead of from an offset
-- of the old topic (which would skip the new topic's first messages).

CREATE TABLE rttm_ingest_topics (
    topic    text        PRIMARY KEY,
    topic_id text        NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
