"""The metrics and alerts engine (DESIGN §5): windows on event time, stuck trades, alerts."""
