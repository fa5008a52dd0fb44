"""Audio for the emulated model: energy endpointing of user PCM16 and sine-tone replies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np


class SpeechEvent(Enum):
    STARTED = "started"  # enough voiced audio to call it speech (used for barge-in)
    ENDED = "ended"  # speech followed by enough silence: the user's turn is over


@dataclass(frozen=True)
class Detection:
    kind: SpeechEvent
    audio_ms: float  # position in the received audio where it was decided
    voiced_ms: float


class EnergyEndpointer:
    """Windowed RMS detector over mono PCM16 LE, measured in audio time.

    An utterance starts at the first voiced window; STARTED fires once its voiced total
    reaches ``start_ms``; ENDED fires when ``min_silence_ms`` of consecutive unvoiced audio
    follows at least ``min_speech_ms`` of voiced audio. Shorter blips are dropped.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        threshold: float = 500.0,
        window_ms: int = 20,
        start_ms: int = 120,
        min_speech_ms: int = 200,
        min_silence_ms: int = 400,
    ) -> None:
        self._window = max(1, sample_rate * window_ms // 1000)
        self._window_ms = 1000.0 * self._window / sample_rate
        self._threshold = threshold
        self._start_ms = start_ms
        self._min_speech_ms = min_speech_ms
        self._min_silence_ms = min_silence_ms
        self._carry = b""
        self._pending = np.empty(0, dtype=np.int16)
        self._position_ms = 0.0
        self._in_utterance = False
        self._started = False
        self._voiced_ms = 0.0
        self._silence_ms = 0.0

    @property
    def in_speech(self) -> bool:
        return self._started

    def reset(self) -> None:
        """Forget the utterance in progress (e.g. when the audio block closes)."""
        self._in_utterance = False
        self._started = False
        self._voiced_ms = 0.0
        self._silence_ms = 0.0

    def feed(self, pcm: bytes) -> list[Detection]:
        data = self._carry + pcm
        usable = len(data) - (len(data) % 2)
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2")
        if self._pending.size:
            samples = np.concatenate([self._pending, samples])
        whole = samples.size - samples.size % self._window
        self._pending = samples[whole:].copy()
        if whole == 0:
            return []
        frames = samples[:whole].astype(np.float64).reshape(-1, self._window)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        out: list[Detection] = []
        for value in rms:
            self._position_ms += self._window_ms
            if value >= self._threshold:
                self._in_utterance = True
                self._voiced_ms += self._window_ms
                self._silence_ms = 0.0
                if not self._started and self._voiced_ms >= self._start_ms:
                    self._started = True
                    out.append(Detection(SpeechEvent.STARTED, self._position_ms, self._voiced_ms))
            elif self._in_utterance:
                self._silence_ms += self._window_ms
                if self._silence_ms >= self._min_silence_ms:
                    if self._voiced_ms >= self._min_speech_ms:
                        out.append(Detection(SpeechEvent.ENDED, self._position_ms, self._voiced_ms))
                    self.reset()
        return out


def sine_pcm16(duration_ms: int, frequency_hz: float, sample_rate: int) -> bytes:
    """A mono PCM16 LE sine at ~-10 dBFS with 5 ms fades (no clicks at the edges)."""
    count = sample_rate * duration_ms // 1000
    t = np.arange(count, dtype=np.float64) / sample_rate
    wave = 0.3 * np.sin(2.0 * math.pi * frequency_hz * t)
    fade = min(count // 2, sample_rate // 200)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[count - fade :] *= ramp[::-1]
    return (wave * 32767.0).astype("<i2").tobytes()


def dominant_frequency(pcm: bytes, sample_rate: int) -> float:
    """Frequency (Hz) of the strongest FFT bin of mono PCM16 LE audio."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
    if samples.size < 2:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * sample_rate / samples.size)
