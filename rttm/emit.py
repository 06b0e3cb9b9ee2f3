"""The producer library: a re-export of the ``rttm-emit`` distribution, kept for existing imports.

``from rttm.emit import Emitter`` is ``from rttm_emit import Emitter``: the same class, with
the package's rule for its default settings (``RTTM_KAFKA_BROKERS``, else localhost:9092).
To fall back to the running local stack as RTTM's commands do, pass the server's settings:
``Emitter(rttm.core.config.KafkaSettings.from_env())``.
"""

from __future__ import annotations

from rttm_emit.emitter import MESSAGE_TIMEOUT_MS, WARN_INTERVAL_S, EmitCounters, Emitter

__all__ = ["MESSAGE_TIMEOUT_MS", "WARN_INTERVAL_S", "EmitCounters", "Emitter"]
