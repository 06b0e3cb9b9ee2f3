"""The ingestion: every ``rttm.*`` topic into PostgreSQL, validated, deduplicated, restart-safe."""
