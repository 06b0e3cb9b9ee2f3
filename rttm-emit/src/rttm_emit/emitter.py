"""The producer library business services embed to publish RTTM events.

One call per message type, typed by the contracts; the message key comes from the topic's
key rule, ``event_id`` (UUIDv7) and ``event_time`` (now, UTC) are filled in when not given.
It never blocks and never raises into the caller: RTTM must not apply back-pressure to the
services it watches. When the broker is down or the local queue is full, events are dropped,
counted, and a warning is logged at most once per interval. Messages are not validated
here (that would cost the caller); one that breaks its contract is kept by RTTM's rejects.

    emitter = Emitter()                     # RTTM_KAFKA_BROKERS, else localhost:9092
    emitter.trade_event(trade_id="T1", service_name="pms-core", event_type="POSITION_UPDATED",
                        event_status="SUCCESS")
    emitter.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import Message as KafkaMessage

from rttm_emit.contracts import DlqEvent, ErrorEvent, LogEvent, Message, QueueMetrics, TradeEvent
from rttm_emit.ids import uuid7
from rttm_emit.kafka_settings import KafkaSettings
from rttm_emit.topics import BY_STRUCT

#: Named as before the package split, so that logging set up for it keeps working.
_LOG = logging.getLogger("rttm.emit")
#: Seconds between two warnings about dropped or failed events.
WARN_INTERVAL_S = 10.0
#: How long librdkafka keeps retrying a message before it counts as failed.
MESSAGE_TIMEOUT_MS = 30_000
_ENCODER = msgspec.json.Encoder()


@dataclass
class EmitCounters:
    """What happened to the events handed to :class:`Emitter`."""

    sent: int = 0  # acknowledged by the broker
    failed: int = 0  # given up by librdkafka (broker unreachable past the message timeout)
    dropped: int = 0  # never queued: local queue full or the producer refused it


class Emitter:
    """Publishes contract events to the ``rttm.*`` topics; see the module docstring.

    Args:
        settings: broker address and extra librdkafka settings; default
            :meth:`KafkaSettings.from_env` (``RTTM_KAFKA_BROKERS``, ``RTTM_KAFKA_CONFIG``).
        linger_ms: how long librdkafka waits to fill a batch.
        batch_messages: most messages in one batch.
        queue_messages: local queue size; beyond it events are dropped, not waited for.
        extra: further librdkafka settings, applied last.

    Raises:
        KafkaConfigError: the settings are malformed or librdkafka refuses them, naming the
            key, never the value. Only here: once built, the emitter never raises.
    """

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        *,
        linger_ms: int = 20,
        batch_messages: int = 10_000,
        queue_messages: int = 200_000,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        settings = settings or KafkaSettings.from_env()
        self.counters = EmitCounters()
        self._lock = threading.Lock()
        self._warned_at = -WARN_INTERVAL_S
        self._since_poll = 0
        config = settings.client_config(
            **{
                "enable.idempotence": True,
                "linger.ms": linger_ms,
                "batch.num.messages": batch_messages,
                "queue.buffering.max.messages": queue_messages,
                "message.timeout.ms": MESSAGE_TIMEOUT_MS,
                **(extra or {}),
            }
        )
        try:
            self._producer = Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise settings.rejected(exc) from None

    # -- one call per message type ---------------------------------------------------------

    def trade_event(
        self,
        *,
        trade_id: str,
        service_name: str,
        event_type: str,
        event_status: str,
        source_queue: str | None = None,
        target_queue: str | None = None,
        topic_name: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        message: str | None = None,
        event_time: datetime | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Publish a trade's step through a service; ``False`` if the event was dropped."""
        return self.emit(
            TradeEvent(
                trade_id=trade_id,
                service_name=service_name,
                event_type=event_type,
                event_status=event_status,
                source_queue=source_queue,
                target_queue=target_queue,
                topic_name=topic_name,
                partition=partition,
                offset=offset,
                message=message,
                event_time=event_time or datetime.now(UTC),
                event_id=event_id or uuid7(),
            )
        )

    def queue_metrics(
        self,
        *,
        service_name: str,
        topic_name: str,
        partition: int,
        produced_offset: int,
        consumed_offset: int,
        snapshot_time: datetime | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Publish a consumer's position on one business-queue partition."""
        return self.emit(
            QueueMetrics(
                service_name=service_name,
                topic_name=topic_name,
                partition=partition,
                produced_offset=produced_offset,
                consumed_offset=consumed_offset,
                snapshot_time=snapshot_time or datetime.now(UTC),
                event_id=event_id or uuid7(),
            )
        )

    def dlq_event(
        self,
        *,
        trade_id: str,
        service_name: str,
        topic_name: str,
        reason: str,
        event_time: datetime | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Publish a trade sent to a dead-letter queue."""
        return self.emit(
            DlqEvent(
                trade_id=trade_id,
                service_name=service_name,
                topic_name=topic_name,
                reason=reason,
                event_time=event_time or datetime.now(UTC),
                event_id=event_id or uuid7(),
            )
        )

    def error_event(
        self,
        *,
        service_name: str,
        error_type: str,
        error_message: str,
        trade_id: str | None = None,
        event_time: datetime | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Publish an error a service met."""
        return self.emit(
            ErrorEvent(
                trade_id=trade_id,
                service_name=service_name,
                error_type=error_type,
                error_message=error_message,
                event_time=event_time or datetime.now(UTC),
                event_id=event_id or uuid7(),
            )
        )

    def log_event(
        self,
        *,
        service_name: str,
        log_level: str,
        log_category: str,
        message: str,
        trade_id: str | None = None,
        event_time: datetime | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Publish a parsed WARN/ERROR-style log line."""
        return self.emit(
            LogEvent(
                service_name=service_name,
                log_level=log_level,
                log_category=log_category,
                trade_id=trade_id,
                message=message,
                event_time=event_time or datetime.now(UTC),
                event_id=event_id or uuid7(),
            )
        )

    # -- the common path ---------------------------------------------------------------------

    def emit(self, event: Message) -> bool:
        """Publish a contract Struct as it is; ``False`` if it was dropped. Never raises."""
        try:
            topic = BY_STRUCT[type(event)]
            self._producer.produce(
                topic.name,
                _ENCODER.encode(event),
                topic.key_of(event).encode(),
                on_delivery=self._delivered,
            )
        except BufferError:
            self._drop("the local queue is full (broker slow or down)")
            return False
        except Exception as exc:
            self._drop(f"it could not be sent: {type(exc).__name__}: {exc}")
            return False
        self._since_poll += 1
        if self._since_poll >= 1_000:  # serve delivery reports without a thread
            self._since_poll = 0
            self._serve_reports(lambda: self._producer.poll(0))
        return True

    def _serve_reports(self, serve: Callable[[], int]) -> int | None:
        """``serve()``, which runs delivery reports; None if one of them failed.

        A failure there is the emitter's: logged at most once per interval, never raised into
        the caller.
        """
        try:
            return serve()
        except Exception as exc:  # librdkafka re-raises what a delivery callback raised
            self._warn(f"delivery reports failed: {type(exc).__name__}: {exc}")
            return None

    def _delivered(self, error: KafkaError | None, _message: KafkaMessage) -> None:
        if error is None:
            self.counters.sent += 1
        else:
            self.counters.failed += 1
            self._warn(f"events failed to reach the broker: {error.str()}")

    def _drop(self, why: str) -> None:
        self.counters.dropped += 1
        self._warn(f"events dropped: {why}")

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._warned_at < WARN_INTERVAL_S:
                return
            self._warned_at = now
        c = self.counters
        _LOG.warning(
            "rttm emit: %s (sent %d, failed %d, dropped %d so far)",
            text,
            c.sent,
            c.failed,
            c.dropped,
        )

    def pending(self) -> int:
        """Events queued locally, not yet acknowledged or failed."""
        return len(self._producer)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` s for queued events; returns how many are still pending."""
        left = self._serve_reports(lambda: int(self._producer.flush(timeout)))
        return self.pending() if left is None else left

    def close(self, timeout: float = 10.0) -> int:
        """Flush, then count what could not be delivered as failed; returns that number."""
        left = self.flush(timeout)
        if left:
            self.counters.failed += left
            self._warn(f"{left} events not delivered at close")
        return left
