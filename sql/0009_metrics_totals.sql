-- Counters of the per-window counts, for Prometheus (`rttm serve`'s /metrics).
--
-- The metrics engine writes one row per window and label set to rttm_metrics; Prometheus
-- expects counters that only go up, so that rate() and increase() work. In the same
-- transaction as the windows it writes, the metrics sink adds to rttm_metrics_totals what
-- each window's count rose above the most that window was ever counted at
-- (rttm_metrics_counted): a replay adds nothing, even one that writes a window lower
-- before its late events correct it again; a correction adds its late events. A counter
-- never goes down: a label set that a correction folds into __other__ keeps what it had
-- counted. Counted from the first window written after this migration. `rttm db prune`
-- drops the marks with their windows, and the counters of label sets not counted since.
CREATE TABLE rttm_metrics_totals (
    metric     text        NOT NULL,
    labels     jsonb       NOT NULL,
    value      float8      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric, labels)
);
CREATE TABLE rttm_metrics_counted (
    metric       text        NOT NULL,
    window_start timestamptz NOT NULL,
    labels       jsonb       NOT NULL,
    counted      float8      NOT NULL,
    PRIMARY KEY (metric, window_start, labels)
);
