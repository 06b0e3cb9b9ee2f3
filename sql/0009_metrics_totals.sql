-- Counters of the per-window counts, for Prometheus (`rttm serve`'s /metrics).
--
-- The metrics engine writes one row per window and label set to rttm_metrics; Prometheus
-- expects counters that only go up, so that rate() and increase() work. The metrics sink
-- adds each window's counts here in the same transaction that writes the window: what a
-- batch changes in the counts of the windows it touches (a replay changes nothing, a
-- correction adds its late events). A counter never goes down: a label set that a
-- correction folds into __other__ keeps what it had counted. Counted from the first window
-- written after this migration; `rttm db prune` drops label sets not counted since the
-- cutoff.
CREATE TABLE rttm_metrics_totals (
    metric     text        NOT NULL,
    labels     jsonb       NOT NULL,
    value      float8      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric, labels)
);
