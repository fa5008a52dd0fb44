"""Timing and audio buffers for gapless stream renewal and reconnects (no I/O)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

INPUT_BYTES_PER_S = 16000 * 2  # 16 kHz PCM16 mono


class AudioBuffer:
    """The newest user audio up to `max_s` seconds (by byte count), with arrival times."""

    def __init__(self, max_s: float, bytes_per_s: int = INPUT_BYTES_PER_S) -> None:
        self._limit = int(max_s * bytes_per_s)
        self._frames: deque[tuple[bytes, float]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def first_at(self) -> float | None:
        return self._frames[0][1] if self._frames else None

    def append(self, pcm: bytes, at: float) -> int:
        """Add a frame; returns how many old frames fell out."""
        if self._limit <= 0:
            return 1
        self._frames.append((pcm, at))
        self._bytes += len(pcm)
        dropped = 0
        while self._bytes > self._limit and len(self._frames) > 1:
            old, _ = self._frames.popleft()
            self._bytes -= len(old)
            dropped += 1
        return dropped

    def extend(self, frames: list[tuple[bytes, float]]) -> int:
        return sum(self.append(pcm, at) for pcm, at in frames)

    def frames(self, since: float | None = None) -> list[tuple[bytes, float]]:
        """The buffered frames (only those that arrived at or after `since` if given)."""
        if since is None:
            return list(self._frames)
        return [(pcm, at) for pcm, at in self._frames if at >= since]

    def drain(self) -> list[tuple[bytes, float]]:
        frames = list(self._frames)
        self.clear()
        return frames

    def clear(self) -> None:
        self._frames.clear()
        self._bytes = 0


@dataclass(slots=True)
class RenewalClock:
    """When the current stream should be replaced.

    From `renewal_after_s` the next assistant turn prepares a standby stream and hands
    over when it ends; at `max_session_s` the handover happens regardless.
    """

    renewal_after_s: float
    max_session_s: float
    standby_max_age_s: float
    started_at: float = 0.0

    def reset(self, now: float) -> None:
        self.started_at = now

    @property
    def renew_at(self) -> float:
        return self.started_at + self.renewal_after_s

    @property
    def hard_at(self) -> float:
        return self.started_at + self.max_session_s

    @property
    def force_at(self) -> float:
        """After the deadline a reply in progress may finish; from here it is cut."""
        return self.hard_at + min(20.0, 0.05 * self.max_session_s)

    def armed(self, now: float) -> bool:
        return now >= self.renew_at

    def overdue(self, now: float) -> bool:
        return now >= self.hard_at

    def must_force(self, now: float) -> bool:
        return now >= self.force_at

    def standby_stale(self, now: float, standby_opened_at: float | None) -> bool:
        return standby_opened_at is not None and now - standby_opened_at >= self.standby_max_age_s

    def next_check(self, now: float, standby_opened_at: float | None) -> float:
        """Seconds until something time-based may need doing."""
        points = [self.renew_at, self.hard_at, self.force_at]
        if standby_opened_at is not None:
            points.append(standby_opened_at + self.standby_max_age_s)
        future = [p - now for p in points if p > now]
        return min(future) if future else 1.0
