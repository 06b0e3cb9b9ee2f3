-- The alert outbox (README "Metrics and alerts"): each notification RTTM owes a receiver.
--
-- The metrics sink writes a row per receiver for every firing and resolved transition, in
-- the same transaction as the transition itself, so a crash cannot lose a notification or
-- keep one the table does not hold. A replay writes the same keys again and changes
-- nothing (ON CONFLICT DO NOTHING). The sender delivers due rows in id order and records
-- the outcome (rttm/alerts/outbox.py names the same statuses):
--   due        to send (attempts: failed sends so far, last_error: the latest failure)
--   delivered  the receiver accepted it at delivered_at
--   refused    the receiver answered 4xx: kept with its answer in last_error, never retried
--   history    the transition was older than the delivery horizon: stored, not sent
--   superseded the alert resolved before this firing notice was sent
--   dropped    its receiver is no longer configured
-- A receiver is named by its kind, scheme, host and port ("alertmanager http://am:9093",
-- "webhook https://chat.example:443/…"), never by credentials or a path that may be one.
CREATE TABLE rttm_alert_outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receiver        text        NOT NULL,
    rule            text        NOT NULL,
    labels          jsonb       NOT NULL,
    started_at      timestamptz NOT NULL,
    state           text        NOT NULL CHECK (state IN ('firing', 'resolved')),
    status          text        NOT NULL DEFAULT 'due'
        CHECK (status IN ('due', 'delivered', 'refused', 'history', 'superseded', 'dropped')),
    attempts        integer     NOT NULL DEFAULT 0,
    delivered_at    timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (receiver, rule, labels, started_at, state)
);
CREATE INDEX rttm_alert_outbox_due ON rttm_alert_outbox (receiver, id) WHERE status = 'due';
CREATE INDEX rttm_alert_outbox_alert ON rttm_alert_outbox (rule, labels, started_at);
