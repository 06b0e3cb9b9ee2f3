"""How much the partitions of one worker may read per round: bounded catch-up memory.

After an outage every partition has a backlog. If each read its fill, what one round of
polls brings in would grow with the number of partitions (30 x 5,000 messages in flight,
and four such rounds between source and database, took 682 MB for a 3M backlog). Instead
the readers of a worker share a budget of messages and bytes per round: a round ends when
a reader is polled again, and each reader may take an equal share of what is left among
the readers that still have a backlog, so one busy partition gets the whole budget and
thirty share it. Memory is then bounded by the budget, whatever the partition count.
"""

from __future__ import annotations

#: Messages the readers of one ingestion worker read per round (all partitions together).
#: Between the source and the database a few rounds are in flight (decode, two queued
#: batches per shard, those being written): ~50k rows. 12,000 caught up as fast as 15,000
#: and 30,000, the writer joining queued batches into one transaction (benchmarks/README.md,
#: "Catching up").
ROUND_MESSAGES = 12_000
#: ... of one metrics worker: it holds no rows in flight (a batch becomes a few counters
#: per shard as soon as it is read), but each batch costs a chunk per shard and a watermark
#: update, so small polls slowed it by ~10 %, and 60,000 took less memory than 15,000
#: (bigger chunks, fewer of them queued).
METRICS_ROUND_MESSAGES = 60_000
#: Bytes of message values per round: large messages (stack traces) must not let a round of
#: ROUND_MESSAGES take gigabytes.
ROUND_BYTES = 32 * 1024 * 1024
#: Most messages one poll returns (one Bytewax item); larger batches gained nothing.
MAX_POLL = 5_000


class ReadBudget:
    """The shared allowance of the readers of one worker (each reader has an integer id)."""

    def __init__(self, messages: int = ROUND_MESSAGES, nbytes: int = ROUND_BYTES) -> None:
        self._messages, self._bytes = messages, nbytes
        self._polled: set[int] = set()  # readers polled in this round
        self._backlogged: set[int] = set()  # readers whose last poll filled its allowance
        self._spent_messages = 0
        self._spent_bytes = 0
        self._next_id = 0

    def join(self) -> int:
        """A new reader's id (it counts as backlogged until its first poll says otherwise)."""
        reader, self._next_id = self._next_id, self._next_id + 1
        self._backlogged.add(reader)
        return reader

    def leave(self, reader: int) -> None:
        """A reader that is closed no longer takes a share."""
        self._backlogged.discard(reader)
        self._polled.discard(reader)

    def allowance(self, reader: int, message_bytes: float) -> int:
        """How many messages ``reader`` may take now (at least 1, at most ``MAX_POLL``).

        ``message_bytes`` is the reader's recent average message size, which turns the
        byte budget into messages.
        """
        if reader in self._polled:  # polled again: a new round
            self._polled.clear()
            self._spent_messages = self._spent_bytes = 0
        self._polled.add(reader)
        sharing = 1 + sum(1 for other in self._backlogged if other not in self._polled)
        by_count = (self._messages - self._spent_messages) // sharing
        by_size = (self._bytes - self._spent_bytes) / sharing / max(message_bytes, 1.0)
        return max(1, min(MAX_POLL, by_count, int(by_size)))

    def spent(self, reader: int, allowed: int, messages: int, nbytes: int) -> None:
        """``reader`` took ``messages`` (``nbytes`` of values) of the ``allowed``."""
        self._spent_messages += messages
        self._spent_bytes += nbytes
        if messages >= allowed:
            self._backlogged.add(reader)
        else:
            self._backlogged.discard(reader)
