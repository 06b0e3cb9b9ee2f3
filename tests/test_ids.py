"""UUIDv7 event ids: version, order, reproducibility, and no repeats across a fork."""

from __future__ import annotations

import os
import random
import uuid

import pytest

from rttm.core.ids import uuid7


def test_ids_are_uuid7_and_sort_in_creation_order() -> None:
    ids = [uuid7() for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}
    assert {uuid.UUID(i).variant for i in ids} == {uuid.RFC_4122}


def test_seeded_ids_repeat_and_carry_the_given_time() -> None:
    first = [uuid7(1_767_600_000_000, random.Random(3)) for _ in range(3)]
    again = [uuid7(1_767_600_000_000, random.Random(3)) for _ in range(3)]
    assert first == again
    assert uuid.UUID(first[0]).int >> 80 == 1_767_600_000_000


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: send ten ids and leave at once
        os.write(write, "\n".join(uuid7() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    ours = {uuid7() for _ in range(10)}
    child = set(os.read(read, 10_000).decode().split("\n"))
    os.waitpid(pid, 0)
    os.close(read)
    tails = {i[-17:] for i in ours}
    assert not tails & {i[-17:] for i in child}
