"""An AudioSink that plays into a LiveKit room through `rtc.AudioSource`."""

from __future__ import annotations

from livekit import rtc


class LiveKitSink:
    """Wraps a mono `rtc.AudioSource` (publish it as a local track to be heard).

    The source's native queue (`queue_size_ms`) is the playout buffer: `capture` waits while
    it is full, `clear` empties it, `queued_ms` is its estimate of what is still queued.
    The sink does not own the source; close it where it was created.
    """

    def __init__(self, source: rtc.AudioSource) -> None:
        if source.num_channels != 1:
            raise ValueError("LiveKitSink needs a mono AudioSource")
        self._source = source
        self._generation = 0
        self._inflight_ms = 0.0

    @classmethod
    def create(cls, sample_rate: int, *, queue_ms: int = 200) -> LiveKitSink:
        return cls(rtc.AudioSource(sample_rate, 1, queue_size_ms=queue_ms))

    @property
    def source(self) -> rtc.AudioSource:
        return self._source

    @property
    def sample_rate(self) -> int:
        return self._source.sample_rate

    @property
    def queued_ms(self) -> float:
        # AudioSource counts a frame as queued from the start of capture_frame, even while
        # that call still waits for room; only accepted audio counts here.
        return max(self._source.queued_duration * 1000.0 - self._inflight_ms, 0.0)

    async def capture(self, pcm: bytes) -> None:
        samples = len(pcm) // 2
        if not samples:
            return
        generation = self._generation
        frame = rtc.AudioFrame(pcm, self._source.sample_rate, 1, samples)
        self._inflight_ms = samples * 1000.0 / self._source.sample_rate
        try:
            await self._source.capture_frame(frame)
        finally:
            self._inflight_ms = 0.0
        if generation != self._generation:
            # clear() ran while this frame waited for room: the native side queued it after
            # the clear, so drop it as well.
            self._source.clear_queue()

    def clear(self) -> None:
        self._generation += 1
        self._source.clear_queue()
