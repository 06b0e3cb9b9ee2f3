-- Daily partitions of rttm_trade_events, created ahead of time.
--
-- A day's partition is named rttm_trade_events_pYYYYMMDD and covers [day, day + 1) in
-- UTC. Events for a day without a partition land in rttm_trade_events_default, so an
-- insert never fails; creating the day's partition afterwards moves those rows into it
-- before attaching (PostgreSQL refuses to attach a range the default partition holds).
-- `rttm db migrate` and `rttm db partitions` create partitions ahead; the ingestion also
-- ensures the days it sees. Callers in several processes are serialised by a lock on
-- the parent table, so concurrent creation of the same day is harmless.

CREATE FUNCTION rttm_ensure_trade_event_partition(day date)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    part_name text := 'rttm_trade_events_p' || to_char(day, 'YYYYMMDD');
    lower_bound timestamptz := day::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(part_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- One creator at a time, and writers held off until the attach commits (readers go
    -- on): an insert already routed to the default partition for this day would fail its
    -- partition check once the day is attached, and a row arriving in the default after
    -- the move would make the attach fail. The mode conflicts with itself and with
    -- writers' ROW EXCLUSIVE; taking a table lock (unlike an advisory lock) also makes
    -- the catalog lookup below see a partition that a concurrent caller just created.
    LOCK TABLE rttm_trade_events IN SHARE ROW EXCLUSIVE MODE;
    IF to_regclass(part_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I (LIKE rttm_trade_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
        part_name);
    -- The check lets ATTACH skip its validation scan of the new table.
    EXECUTE format(
        'ALTER TABLE %I ADD CONSTRAINT %I CHECK (event_time >= %L AND event_time < %L)',
        part_name, part_name || '_range', lower_bound, upper_bound);
    LOCK TABLE rttm_trade_events_default IN ACCESS EXCLUSIVE MODE;
    EXECUTE format(
        'WITH moved AS (DELETE FROM rttm_trade_events_default'
        ' WHERE event_time >= $1 AND event_time < $2 RETURNING *)'
        ' INSERT INTO %I SELECT * FROM moved',
        part_name) USING lower_bound, upper_bound;
    EXECUTE format(
        'ALTER TABLE rttm_trade_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        part_name, lower_bound, upper_bound);
    RETURN true;
END;
$$;

COMMENT ON FUNCTION rttm_ensure_trade_event_partition(date) IS
    'Create the rttm_trade_events partition of one UTC day if missing; true if created.';
