"""RTTM: real-time trade monitoring for Kafka trade pipelines, stored in PostgreSQL."""

__version__ = "0.1.0"
