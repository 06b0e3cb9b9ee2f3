"""The read budget of one worker: what a round of polls may bring in, whatever the partitions."""

from __future__ import annotations

import pytest

from rttm.ingest.budget import MAX_POLL, RoundBudget


def one_round(budget: RoundBudget, readers: int, backlog: int, size: int) -> int:
    """Poll every reader once, each reading what the round still allows; messages read."""
    taken = 0
    for reader in range(readers):
        got = min(budget.allowance(reader, size), backlog)
        budget.spent(got, got * size)
        taken += got
    return taken


@pytest.mark.parametrize("partitions", [1, 30, 60, 300])
def test_a_round_reads_at_most_the_budget_whatever_the_partition_count(partitions: int) -> None:
    budget = RoundBudget(messages=20_000, nbytes=1 << 40)
    for _ in range(5):
        taken = one_round(budget, partitions, 10**9, 500)
        assert taken == min(20_000, partitions * MAX_POLL)


def test_large_messages_are_bounded_by_bytes_yet_a_round_always_reads_one() -> None:
    budget = RoundBudget(messages=20_000, nbytes=32 << 20)
    taken = one_round(budget, 30, 10**9, 100_000)  # stack traces of 100 kB
    assert taken == (32 << 20) // 100_000
    huge = RoundBudget(messages=20_000, nbytes=1 << 20)
    assert one_round(huge, 3, 10**9, 5 << 20) == 1  # one 5 MB message a round, not none


def test_the_round_renews_when_a_partition_is_polled_again() -> None:
    budget = RoundBudget(messages=6_000, nbytes=1 << 40)
    assert budget.allowance(0, 500) == MAX_POLL
    budget.spent(MAX_POLL, MAX_POLL * 500)
    assert budget.allowance(1, 500) == 1_000
    budget.spent(1_000, 1_000 * 500)
    assert budget.allowance(2, 500) == 0  # spent: the third partition waits
    assert budget.allowance(0, 500) == MAX_POLL  # the first again: a new round
