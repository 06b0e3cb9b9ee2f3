-- Results of the metrics engine (dataflows/metrics.py, DESIGN §5).
--
-- Every write is an upsert on a key computed from event time, so a replay after a crash
-- rewrites the same rows instead of adding new ones.

-- One value per metric, label set and window. Labels are a JSON object of strings; the
-- primary key serves "metric X over the last 15 minutes" (metric, then window_start) and
-- "metric X for these labels" (the jsonb value compares by content).
CREATE TABLE rttm_metrics (
    metric       text             NOT NULL,
    window_start timestamptz      NOT NULL,
    labels       jsonb            NOT NULL,
    window_end   timestamptz      NOT NULL,
    value        double precision NOT NULL,
    computed_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (metric, window_start, labels)
);
CREATE INDEX rttm_metrics_labels ON rttm_metrics USING gin (labels jsonb_path_ops);
CREATE INDEX rttm_metrics_window_start ON rttm_metrics (window_start);

-- Trades that stopped: one row per stop (a trade may stop, recover and stop again).
-- detected_at is event time: the last event's time plus the stage's stuck_after.
CREATE TABLE rttm_stuck_trades (
    trade_id        text        NOT NULL,
    last_event_time timestamptz NOT NULL,
    stage           text        NOT NULL,
    service_name    text        NOT NULL,
    last_event_type text        NOT NULL,
    detected_at     timestamptz NOT NULL,
    recovered_at    timestamptz,
    PRIMARY KEY (trade_id, last_event_time)
);
CREATE INDEX rttm_stuck_trades_open ON rttm_stuck_trades (detected_at)
    WHERE recovered_at IS NULL;

-- Alert transitions (pending, firing, resolved, inactive), next to the events. One alert
-- instance is (rule, labels, started_at); each of its transitions is a row.
CREATE TABLE rttm_alerts (
    rule        text             NOT NULL,
    labels      jsonb            NOT NULL,
    started_at  timestamptz      NOT NULL,
    state       text             NOT NULL
        CHECK (state IN ('pending', 'firing', 'resolved', 'inactive')),
    at          timestamptz      NOT NULL,
    value       double precision NOT NULL,
    severity    text             NOT NULL,
    summary     text             NOT NULL,
    resolved_at timestamptz,
    recorded_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (rule, labels, started_at, state)
);
CREATE INDEX rttm_alerts_at ON rttm_alerts (at);
