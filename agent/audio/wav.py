"""WAV files in and out: a sink that records what was played, and a frame source."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

from livekit import rtc

from .sink import MemorySink


class WavSink(MemorySink):
    """Writes the audio that was actually played to a mono PCM16 WAV file.

    realtime=False plays instantly (the file gets every captured byte); realtime=True paces
    playout like a speaker, so a clear() (barge-in) leaves the unplayed rest out of the file.
    Call close() to finish the file.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int = 24000,
        *,
        realtime: bool = False,
        queue_ms: float = 200.0,
    ) -> None:
        super().__init__(
            sample_rate,
            queue_ms=queue_ms,
            clock="realtime" if realtime else "instant",
            record=False,
        )
        self.path = Path(path)
        self._wav: wave.Wave_write | None = wave.open(str(self.path), "wb")  # noqa: SIM115
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)

    def _on_played(self, chunk: memoryview) -> None:
        if self._wav is not None:
            self._wav.writeframesraw(chunk)

    def close(self) -> None:
        """Finish the file; audio still queued (not yet played) is left out. Idempotent."""
        self._advance()
        if self._wav is not None:
            self._wav.close()
            self._wav = None


async def wav_frames(
    path: str | Path, *, frame_ms: int = 20, realtime: bool = True
) -> AsyncIterator[rtc.AudioFrame]:
    """Yield a PCM16 WAV file as `frame_ms` AudioFrames (its own rate and channels; the last
    frame may be shorter), paced in real time unless realtime=False."""
    loop = asyncio.get_running_loop()
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        step = rate * frame_ms // 1000
        start = loop.time()
        sent = 0
        while data := wav.readframes(step):
            samples = len(data) // (2 * channels)
            if realtime:
                # Absolute deadlines, so sleep overshoot does not accumulate into drift.
                delay = start + sent / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            yield rtc.AudioFrame(data, rate, channels, samples)
            sent += samples
