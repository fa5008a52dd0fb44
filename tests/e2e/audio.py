"""Audio for the simulated caller: test signals, WAV loading, and tolerant analysis.

Checks are deliberately coarse (energy over time, dominant frequency): the path runs
through two Opus encodes, WebRTC jitter buffers and resampling.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

SILENCE_DBFS = -60.0


def tone(freq_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.3) -> Samples:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (np.sin(2 * np.pi * freq_hz * t) * amplitude * 32767).astype(np.int16)


def silence(seconds: float, sample_rate: int) -> Samples:
    return np.zeros(int(seconds * sample_rate), dtype=np.int16)


def read_wav(path: Path, sample_rate: int) -> Samples:
    """A mono PCM16 WAV, resampled (linear) to `sample_rate` if needed."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16-bit PCM")
        channels = wav.getnchannels()
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != sample_rate:
        positions = np.arange(int(len(data) * sample_rate / rate)) * rate / sample_rate
        data = np.interp(positions, np.arange(len(data)), data).astype(np.int16)
    return data


def dbfs(samples: npt.NDArray[np.int16] | npt.NDArray[np.float64]) -> float:
    if len(samples) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    return 20 * float(np.log10(max(rms, 1e-3) / 32768.0))


def dominant_frequency(samples: Samples, sample_rate: int) -> float:
    """The strongest frequency (Hz) of a Hann-windowed FFT, refined by parabolic fit."""
    if len(samples) < 64:
        return 0.0
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    if 0 < k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        k_refined = k + (0.5 * (a - c) / denom if denom else 0.0)
    else:
        k_refined = float(k)
    return float(k_refined * sample_rate / len(samples))


@dataclass(frozen=True, slots=True)
class Chunk:
    """Received audio: `samples` whose first sample arrived at time.monotonic() `t`."""

    t: float
    samples: Samples


class Recording:
    """What one caller heard from one remote track, with arrival times (time.monotonic())."""

    def __init__(self, sample_rate: int, max_seconds: float = 120.0) -> None:
        self.sample_rate = sample_rate
        self._chunks: list[Chunk] = []
        self._max_chunks = int(max_seconds * 100)  # 10 ms frames

    def add(self, t: float, samples: Samples) -> None:
        self._chunks.append(Chunk(t, samples))
        if len(self._chunks) > self._max_chunks:
            del self._chunks[: len(self._chunks) - self._max_chunks]

    @property
    def chunks(self) -> list[Chunk]:
        return list(self._chunks)

    def between(self, t0: float, t1: float) -> Samples:
        parts = [c.samples for c in self._chunks if t0 <= c.t < t1]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def loud_chunks(self, threshold_dbfs: float, after: float = 0.0) -> list[Chunk]:
        return [c for c in self._chunks if c.t >= after and dbfs(c.samples) > threshold_dbfs]

    def first_loud(self, threshold_dbfs: float, after: float = 0.0) -> float | None:
        loud = self.loud_chunks(threshold_dbfs, after)
        return loud[0].t if loud else None

    def last_loud(self, threshold_dbfs: float, after: float = 0.0) -> float | None:
        loud = self.loud_chunks(threshold_dbfs, after)
        return loud[-1].t if loud else None

    def quiet_since(self, threshold_dbfs: float, after: float, hold_s: float) -> float | None:
        """Start of the first run of ≥ hold_s below threshold that begins at or after `after`."""
        start: float | None = None
        for chunk in self._chunks:
            if chunk.t < after:
                continue
            if dbfs(chunk.samples) > threshold_dbfs:
                start = None
            elif start is None:
                start = chunk.t
            if start is not None and chunk.t - start >= hold_s:
                return start
        return None

    def loud_seconds(self, threshold_dbfs: float, t0: float, t1: float) -> float:
        return sum(
            len(c.samples) / self.sample_rate
            for c in self._chunks
            if t0 <= c.t < t1 and dbfs(c.samples) > threshold_dbfs
        )

    def dominant_frequency(self, t0: float, t1: float, threshold_dbfs: float = -40.0) -> float:
        """Dominant frequency of the loud audio heard between t0 and t1."""
        loud = [c.samples for c in self._chunks if t0 <= c.t < t1]
        loud = [s for s in loud if dbfs(s) > threshold_dbfs]
        if not loud:
            return 0.0
        return dominant_frequency(np.concatenate(loud), self.sample_rate)
