"""How much one worker reads per round of polls: catch-up memory bounded by a budget.

After an outage every partition has a backlog. Before this budget each partition read up
to 5,000 messages per poll, so a round of polls brought in partitions x 5,000 messages, and
about four rounds sit between the source and the database (decode, two queued batches per
shard, one being written): a 3M-message backlog on 30 partitions peaked at 682 MB. Now a
round, whatever the number of partitions, reads at most ``ROUND_MESSAGES`` messages and
``ROUND_BYTES`` of values. A round ends when a partition is polled again; partitions polled
after the budget is spent wait for the next round (the next activation, not a sleep).
"""

from __future__ import annotations

#: Messages one worker reads per round, all its partitions together: about four rounds are
#: in flight, so ~80k rows (benchmarks/README.md, "Catching up": memory and speed).
ROUND_MESSAGES = 20_000
#: Bytes of message values per round: large messages (stack traces) must not let a round
#: of ``ROUND_MESSAGES`` take gigabytes.
ROUND_BYTES = 32 * 1024 * 1024
#: Most messages one ``consume()`` call returns (one fill of the partitions' inboxes).
MAX_POLL = 5_000


class RoundBudget:
    """The reading allowance of one worker, renewed every round."""

    def __init__(self, messages: int = ROUND_MESSAGES, nbytes: int = ROUND_BYTES) -> None:
        self._messages, self._bytes = messages, nbytes
        self._polled: set[int] = set()  # partitions polled in this round (their ids)
        self._spent_messages = 0
        self._spent_bytes = 0

    def allowance(self, reader: int, message_bytes: float) -> int:
        """How many messages may be read now for ``reader``'s poll (0: wait for the next round).

        ``message_bytes`` is the recent average value size, which turns bytes into messages.
        """
        if reader in self._polled:  # polled again: a new round
            self._polled.clear()
            self._spent_messages = self._spent_bytes = 0
        self._polled.add(reader)
        by_size = (self._bytes - self._spent_bytes) / max(message_bytes, 1.0)
        left = min(self._messages - self._spent_messages, int(by_size))
        if self._spent_messages == 0:
            left = max(left, 1)  # a round always reads something, however large a message
        return max(0, min(MAX_POLL, left))

    def spent(self, messages: int, nbytes: int) -> None:
        """``messages`` (``nbytes`` of values) were read in this round."""
        self._spent_messages += messages
        self._spent_bytes += nbytes
