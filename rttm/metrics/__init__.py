"""The metrics and alerts engine (docs/design.md §5.2): event-time windows, stuck trades, alerts."""
