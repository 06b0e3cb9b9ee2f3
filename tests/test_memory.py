"""The ingestion's malloc settings take effect on this (glibc) machine."""

from __future__ import annotations

import platform

import pytest

from rttm.core import memory


def test_glibc_accepts_the_malloc_settings() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.fail("RTTM's reference platform is Linux with glibc; this machine is not")
    assert memory.tune_malloc() is True
