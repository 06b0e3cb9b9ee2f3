"""The read budget of one worker: what a round of polls may bring in, whatever the partitions."""

from __future__ import annotations

import pytest

from rttm.core.stream.budget import MAX_POLL, ReadBudget


def one_round(budget: ReadBudget, readers: list[int], backlog: dict[int, int], size: int) -> int:
    """Poll every reader once, each taking what it may of its backlog; messages taken."""
    taken = 0
    for reader in readers:
        allowed = budget.allowance(reader, size)
        got = min(allowed, backlog[reader])
        backlog[reader] -= got
        budget.spent(reader, allowed, got, got * size)
        taken += got
    return taken


@pytest.mark.parametrize("partitions", [1, 30, 60, 300])
def test_a_round_takes_at_most_the_budget_whatever_the_partition_count(partitions: int) -> None:
    budget = ReadBudget(messages=30_000, nbytes=1 << 40)
    readers = [budget.join() for _ in range(partitions)]
    backlog = dict.fromkeys(readers, 10**9)
    for _ in range(5):
        taken = one_round(budget, readers, backlog, 500)
        assert taken <= max(30_000, partitions)  # at least one message each
        assert taken >= min(30_000, partitions * MAX_POLL) * 0.99  # the budget is used


def test_backlogged_partitions_share_the_round_evenly() -> None:
    budget = ReadBudget(messages=30_000, nbytes=1 << 40)
    readers = [budget.join() for _ in range(30)]
    backlog = dict.fromkeys(readers, 10**9)
    one_round(budget, readers, backlog, 500)
    taken = [10**9 - backlog[r] for r in readers]
    assert max(taken) - min(taken) <= 1
    assert sum(taken) == 30_000


def test_one_busy_partition_among_idle_ones_gets_a_full_poll() -> None:
    budget = ReadBudget(messages=30_000, nbytes=1 << 40)
    readers = [budget.join() for _ in range(30)]
    backlog = {r: 0 for r in readers} | {readers[0]: 10**9}
    one_round(budget, readers, backlog, 500)  # the idle ones say so on their first poll
    before = backlog[readers[0]]
    one_round(budget, readers, backlog, 500)
    assert before - backlog[readers[0]] == MAX_POLL


def test_large_messages_are_bounded_by_bytes() -> None:
    budget = ReadBudget(messages=30_000, nbytes=32 << 20)
    readers = [budget.join() for _ in range(30)]
    backlog = dict.fromkeys(readers, 10**9)
    size = 100_000  # stack traces of 100 kB
    for _ in range(3):
        taken = one_round(budget, readers, backlog, size)
        assert taken * size <= (32 << 20) + len(readers) * size  # one message each at most over


def test_a_closed_reader_takes_no_share() -> None:
    budget = ReadBudget(messages=6_000, nbytes=1 << 40)
    first, second = budget.join(), budget.join()
    budget.leave(second)
    assert budget.allowance(first, 500) == MAX_POLL  # were it still sharing: 3,000
