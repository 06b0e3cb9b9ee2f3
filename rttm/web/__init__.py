"""The dashboard: a JSON API under ``/api/``, ``/metrics`` for Prometheus, and a static page."""
