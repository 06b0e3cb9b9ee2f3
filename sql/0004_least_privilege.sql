-- Least privilege for the ingestion (README "Database role").
--
-- The ingestion only writes: rows into its tables, its progress, and new day partitions.
-- Creating a partition needs the owner's rights (CREATE TABLE, ATTACH, moving rows out of
-- the default partition), so the function runs as its owner — the role that migrates —
-- with a fixed search path (this schema, then pg_temp last, so no caller's objects can
-- stand in for the tables), and only roles granted EXECUTE (`rttm db grant-ingest`) may
-- call it. Its only input is a date; names are built with %I, values passed with %L.

DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION rttm_ensure_trade_event_partition(date)'
        ' SECURITY DEFINER SET search_path = %I, pg_temp',
        current_schema());
END;
$$;

REVOKE EXECUTE ON FUNCTION rttm_ensure_trade_event_partition(date) FROM PUBLIC;
