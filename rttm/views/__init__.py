"""What an operator looks at — trade trace, status, alerts — as JSON-ready dicts.

The CLI renders them as tables or prints them with ``--json``; the web API returns them as
they are. Queries read the tables the ingestion and metrics flows write; "now" is the newest
metrics window (event time), so a replayed history reads the same as a live one.
"""
