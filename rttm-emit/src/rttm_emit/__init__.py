"""rttm-emit: publish RTTM's observability events from a business service.

``from rttm_emit import Emitter``; one call per message type, never blocking the caller.
Its only dependencies are confluent-kafka and msgspec (README.md says more).
"""

from rttm_emit.contracts import DlqEvent, ErrorEvent, LogEvent, Message, QueueMetrics, TradeEvent
from rttm_emit.emitter import EmitCounters, Emitter
from rttm_emit.ids import uuid7
from rttm_emit.kafka_settings import KafkaConfigError, KafkaSettings
from rttm_emit.topics import TOPICS, Topic

__version__ = "0.1.0"  # written only here: pyproject.toml reads it; a test checks the server's pin

__all__ = [
    "TOPICS",
    "DlqEvent",
    "EmitCounters",
    "Emitter",
    "ErrorEvent",
    "KafkaConfigError",
    "KafkaSettings",
    "LogEvent",
    "Message",
    "QueueMetrics",
    "Topic",
    "TradeEvent",
    "__version__",
    "uuid7",
]
