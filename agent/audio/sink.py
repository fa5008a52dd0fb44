"""Where reply audio goes: the AudioSink protocol and an in-memory sink with a playout clock."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Literal, Protocol, runtime_checkable

Clock = Literal["realtime", "manual", "instant"]


@runtime_checkable
class AudioSink(Protocol):
    """A playout queue for mono PCM16 LE audio."""

    @property
    def sample_rate(self) -> int: ...

    async def capture(self, pcm: bytes) -> None:
        """Queue audio for playout; may wait while the bounded queue is full (this paces
        faster-than-real-time replies). A capture still waiting when clear() is called is
        dropped too."""

    def clear(self) -> None:
        """Drop everything queued, immediately (barge-in)."""

    @property
    def queued_ms(self) -> float:
        """Audio accepted but not yet played."""
        ...


class MemorySink:
    """An AudioSink that "plays" into memory, for tests, benchmarks and files.

    clock="realtime": queued audio plays at 1x wall-clock speed (time.monotonic).
    clock="manual": audio plays only when `advance(ms)` is called.
    clock="instant": everything captured is played at once; nothing is ever queued.

    `played` holds the bytes played so far (when `record` is true); `captured_bytes`,
    `played_bytes`, `cleared_bytes` and `clear_count` count what happened.
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        *,
        queue_ms: float = 200.0,
        clock: Clock = "realtime",
        record: bool = True,
    ) -> None:
        self._rate = sample_rate
        self._bytes_per_s = sample_rate * 2
        self._limit = int(queue_ms * self._bytes_per_s / 1000) & ~1
        self._clock = clock
        self._record = record
        self._queue: deque[bytes] = deque()
        self._head = 0  # bytes of _queue[0] already played
        self._queued = 0
        self._now = 0.0 if clock == "manual" else time.monotonic()
        self._last = self._now
        self._credit = 0.0  # fractional bytes of play time not yet applied
        self._generation = 0  # bumped by clear(): captures waiting across it are dropped
        self._waiter: asyncio.Future[None] | None = None
        self.played = bytearray()
        self.captured_bytes = 0
        self.played_bytes = 0
        self.cleared_bytes = 0
        self.clear_count = 0

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def queued_ms(self) -> float:
        self._advance()
        return self._queued * 1000.0 / self._bytes_per_s

    @property
    def played_ms(self) -> float:
        self._advance()
        return self.played_bytes * 1000.0 / self._bytes_per_s

    async def capture(self, pcm: bytes) -> None:
        if not pcm:
            return
        generation = self._generation
        while True:
            self._advance()
            if generation != self._generation:
                return
            if not self._queued or self._queued + len(pcm) <= self._limit:
                break
            await self._wait(self._queued + len(pcm) - self._limit)
        self.captured_bytes += len(pcm)
        if self._clock == "instant":
            self._play(memoryview(pcm))
            return
        self._queue.append(pcm)
        self._queued += len(pcm)

    def clear(self) -> None:
        self._advance()
        self.clear_count += 1
        self.cleared_bytes += self._queued
        self._queue.clear()
        self._head = self._queued = 0
        self._generation += 1
        self._wake()

    def advance(self, ms: float) -> None:
        """Manual clock: play `ms` of queued audio."""
        if self._clock != "manual":
            raise RuntimeError("advance() needs clock='manual'")
        self._now += ms / 1000.0
        self._advance()
        self._wake()

    async def wait_for_playout(self) -> None:
        """Until the queue is empty (real-time clock: sleeps for the queued duration)."""
        while self.queued_ms > 0:
            await self._wait(self._queued)

    def _on_played(self, chunk: memoryview) -> None:
        """Called with each stretch of audio as it plays; subclasses write it somewhere."""
        if self._record:
            self.played += chunk

    def _play(self, chunk: memoryview) -> None:
        self.played_bytes += len(chunk)
        self._on_played(chunk)

    def _advance(self) -> None:
        if self._clock == "instant":
            return
        now = self._now if self._clock == "manual" else time.monotonic()
        if not self._queued:  # nothing plays during an underrun; playout restarts on capture
            self._last, self._credit = now, 0.0
            return
        self._credit += (now - self._last) * self._bytes_per_s
        self._last = now
        budget = min(int(self._credit) & ~1, self._queued)
        self._credit -= budget
        while budget:
            head = self._queue[0]
            take = min(len(head) - self._head, budget)
            self._play(memoryview(head)[self._head : self._head + take])
            self._head += take
            self._queued -= take
            budget -= take
            if self._head == len(head):
                self._queue.popleft()
                self._head = 0
        if not self._queued:
            self._credit = 0.0

    async def _wait(self, nbytes: int) -> None:
        """Until about `nbytes` more have played, or clear()/advance() wakes us."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if self._clock == "manual":
                await self._waiter
            else:
                await asyncio.wait({self._waiter}, timeout=nbytes / self._bytes_per_s)
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
