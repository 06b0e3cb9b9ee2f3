"""Decode + validate cost per message and topic, valid and invalid (``./dev bench``)."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.data import messages
from rttm.decode import Accepted, Rejected, decode_message
from rttm.registry import TOPICS

BATCH = 10_000


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
@pytest.mark.parametrize("topic", [spec.name for spec in TOPICS])
def test_decode(benchmark: BenchmarkFixture, topic: str, valid: bool) -> None:
    benchmark.group = "decode (10k messages per round)"
    benchmark.extra_info["items"] = BATCH
    batch = messages(topic, BATCH, invalid=not valid)
    expected = Accepted if valid else Rejected

    def run() -> int:
        return sum(
            isinstance(decode_message(topic, None, value, 0, offset, 0), expected)
            for offset, value in enumerate(batch)
        )

    assert benchmark(run) == BATCH
