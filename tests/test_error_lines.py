"""The one-line causes RTTM prints for server errors: libpq's and librdkafka's, unwrapped."""

from __future__ import annotations

import psycopg
import pytest

from rttm.core.db.connect import error_cause
from rttm.core.errors import RttmError
from rttm.core.kafka_topics import _without_noise


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            'connection failed: connection to server at "127.0.0.1", port 5999 failed: '
            "Connection refused\n\tIs the server running on that host and accepting TCP/IP "
            "connections?",
            "Connection refused",
        ),
        (
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
            'password authentication failed for user "rttm_ingest"',
            'password authentication failed for user "rttm_ingest"',
        ),
        (
            "consuming input failed: server closed the connection unexpectedly\n\tThis probably "
            "means the server terminated abnormally\n\tbefore or while processing the request.",
            "server closed the connection unexpectedly",
        ),
        ("", "OperationalError"),
    ],
)
def test_a_libpq_error_is_its_cause_alone(message: str, cause: str) -> None:
    assert error_cause(psycopg.OperationalError(message)) == cause


def test_other_errors_keep_their_last_line_whole() -> None:
    assert error_cause(RttmError("first\nquery failed: x")) == "query failed: x"
    assert error_cause(ValueError()) == "ValueError"


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (
            "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused "
            "(after 0ms in state CONNECT)",
            "Connect to ipv4#127.0.0.1:9 failed: Connection refused",
        ),
        (
            "ssl://broker:9093/1: SSL handshake failed: certificate verify failed "
            "(after 12ms in state SSL_HANDSHAKE, 3 identical error(s) suppressed)",
            "SSL handshake failed: certificate verify failed",
        ),
        ("1/1 brokers are down", "1/1 brokers are down"),
    ],
)
def test_librdkafka_errors_lose_the_broker_prefix_and_the_state_timings(
    text: str, cause: str
) -> None:
    assert _without_noise(text) == cause
