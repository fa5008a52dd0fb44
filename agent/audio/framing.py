"""PCM16 framing: fixed-size re-chunking, channel downmix and sample-rate conversion.

All audio here is PCM16 little-endian. Resampling uses livekit's native sox resampler
(`rtc.AudioResampler`); downmixing is done with numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from livekit import rtc

Buffer = bytes | bytearray | memoryview


class Rechunker:
    """Cuts a PCM byte stream into frames of exactly `frame_bytes`, carrying the remainder.

    Every fed byte comes out exactly once, in order: in a full frame from `feed`, or in the
    partial frame returned by `flush`. `feed` takes byte-format buffers only.
    """

    __slots__ = ("_buf", "frame_bytes")

    def __init__(self, frame_bytes: int) -> None:
        if frame_bytes <= 0 or frame_bytes % 2:
            raise ValueError(f"frame_bytes must be a positive even number; got {frame_bytes}")
        self.frame_bytes = frame_bytes
        self._buf = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: Buffer) -> list[bytes]:
        size = self.frame_bytes
        buf = self._buf
        if not buf and len(data) == size:  # the common case: input already frame-sized
            return [bytes(data)]
        buf += data
        count = len(buf) // size
        if not count:
            return []
        with memoryview(buf) as view:
            frames = [view[i : i + size].tobytes() for i in range(0, count * size, size)]
        del buf[: count * size]
        return frames

    def flush(self) -> bytes:
        """The partial frame left over (possibly empty); the chunker is empty afterwards."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


class PcmConverter:
    """PCM16 at any rate/channel count -> mono PCM16 at `sample_rate` in `frame_ms` frames.

    Channels are averaged (numpy, into reused buffers); a rate change goes through one
    `rtc.AudioResampler` per input format, re-created when the input format changes.
    """

    def __init__(
        self,
        sample_rate: int,
        frame_ms: int = 20,
        *,
        quality: rtc.AudioResamplerQuality = rtc.AudioResamplerQuality.MEDIUM,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self._quality = quality
        self._chunker = Rechunker(sample_rate * frame_ms // 1000 * 2)
        self._format: tuple[int, int] | None = None
        self._resampler: rtc.AudioResampler | None = None
        # Reused downmix buffers, sized for the last input length.
        self._mono = bytearray()
        self._mono_view: npt.NDArray[np.int16] = np.zeros(0, np.int16)
        self._acc: npt.NDArray[np.int32] = np.zeros(0, np.int32)

    @property
    def frame_bytes(self) -> int:
        return self._chunker.frame_bytes

    def push_pcm(self, pcm: Buffer, sample_rate: int, channels: int = 1) -> list[bytes]:
        """Convert one chunk; returns the complete output frames it finished (maybe none)."""
        if (sample_rate, channels) != self._format:
            self._reconfigure(sample_rate, channels)
        if channels > 1:
            pcm = self._downmix(pcm, channels)
        if self._resampler is None:
            return self._chunker.feed(pcm)
        data = pcm if isinstance(pcm, bytearray) else bytearray(pcm)
        return self._feed_frames(self._resampler.push(data))

    def flush(self) -> list[bytes]:
        """End of stream: the resampler's tail and the partial last frame (the last item may be
        shorter than a frame). The next push starts a fresh stream."""
        frames: list[bytes] = []
        if self._resampler is not None:
            frames = self._feed_frames(self._resampler.flush())
            self._format = None  # a flushed sox stream cannot take more input
        rest = self._chunker.flush()
        if rest:
            frames.append(rest)
        return frames

    def reset(self) -> None:
        """Drop buffered audio and resampler state (e.g. after a barge-in)."""
        self._chunker.flush()
        self._format = None
        self._resampler = None

    def _feed_frames(self, frames: list[rtc.AudioFrame]) -> list[bytes]:
        out: list[bytes] = []
        for frame in frames:
            out += self._chunker.feed(frame.data.cast("B"))
        return out

    def _reconfigure(self, sample_rate: int, channels: int) -> None:
        if channels < 1 or sample_rate <= 0:
            raise ValueError(f"bad input format: {sample_rate} Hz, {channels} channels")
        self._format = (sample_rate, channels)
        self._resampler = (
            None
            if sample_rate == self.sample_rate
            else rtc.AudioResampler(sample_rate, self.sample_rate, quality=self._quality)
        )

    def _downmix(self, pcm: Buffer, channels: int) -> bytearray:
        samples = np.frombuffer(pcm, dtype=np.int16)
        count = len(samples) // channels
        if len(self._acc) != count:
            self._mono = bytearray(count * 2)
            self._mono_view = np.frombuffer(self._mono, dtype=np.int16)
            self._acc = np.empty(count, np.int32)
        acc = self._acc
        end = count * channels
        # Strided adds: much cheaper than a sum over a (count, channels) axis.
        np.add(samples[0:end:channels], samples[1:end:channels], out=acc, dtype=np.int32)
        for channel in range(2, channels):
            np.add(acc, samples[channel:end:channels], out=acc)
        if channels == 2:
            np.right_shift(acc, 1, out=self._mono_view, casting="unsafe")
        else:
            np.floor_divide(acc, channels, out=self._mono_view, casting="unsafe")
        return self._mono


class InputConverter(PcmConverter):
    """Room audio (`rtc.AudioFrame`, any rate/channels) -> the session's input frames."""

    def push(self, frame: rtc.AudioFrame) -> list[bytes]:
        if frame.num_channels == 1 and frame.sample_rate != self.sample_rate:
            if (frame.sample_rate, 1) != self._format:
                self._reconfigure(frame.sample_rate, 1)
            assert self._resampler is not None
            return self._feed_frames(self._resampler.push(frame))  # no copy: reads the frame
        return self.push_pcm(frame.data.cast("B"), frame.sample_rate, frame.num_channels)
