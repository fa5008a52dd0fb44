"""Re-chunking keeps every sample; conversion downmixes and resamples with the real resampler."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc

from agent.audio import InputConverter, PcmConverter, Rechunker

from .helpers import sine

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("seed", range(20))
def test_rechunker_random_sizes_keep_bytes_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame_bytes = int(rng.integers(1, 200)) * 2
    data = rng.integers(0, 256, int(rng.integers(0, 20000)), dtype=np.uint8).tobytes()
    chunker = Rechunker(frame_bytes)
    out: list[bytes] = []
    offset = 0
    while offset < len(data):
        size = int(rng.integers(0, 3 * frame_bytes))
        piece = data[offset : offset + size]
        kind = rng.integers(0, 3)  # feed bytes, bytearray and memoryview alike
        fed = piece if kind == 0 else bytearray(piece) if kind == 1 else memoryview(piece)
        out += chunker.feed(fed)
        offset += size
    assert all(len(frame) == frame_bytes for frame in out)
    rest = chunker.flush()
    assert len(rest) < frame_bytes
    assert b"".join(out) + rest == data
    assert chunker.pending_bytes == 0 and chunker.flush() == b""


def test_rechunker_exact_frames_pass_through_and_are_copies() -> None:
    chunker = Rechunker(4)
    buf = bytearray(b"abcd")
    [frame] = chunker.feed(buf)
    buf[0] = ord("z")
    assert frame == b"abcd"


@pytest.mark.parametrize("frame_bytes", [0, -2, 3])
def test_rechunker_rejects_bad_sizes(frame_bytes: int) -> None:
    with pytest.raises(ValueError):
        Rechunker(frame_bytes)


def test_same_format_is_bit_exact() -> None:
    rng = np.random.default_rng(7)
    pcm = rng.integers(-32768, 32767, 16000, dtype=np.int16).tobytes()
    conv = InputConverter(16000, 20)
    out: list[bytes] = []
    offset = 0
    while offset < len(pcm):
        size = int(rng.integers(1, 500)) * 2
        chunk = pcm[offset : offset + size]
        out += conv.push(rtc.AudioFrame(chunk, 16000, 1, len(chunk) // 2))
        offset += size
    assert {len(f) for f in out} == {640}
    out += conv.flush()
    assert b"".join(out) == pcm


def test_downmix_is_the_channel_mean() -> None:
    rng = np.random.default_rng(3)
    stereo = rng.integers(-32768, 32767, (1600, 2), dtype=np.int16)
    conv = PcmConverter(16000, 20)
    out = conv.push_pcm(stereo.tobytes(), 16000, 2) + conv.flush()
    mono = np.frombuffer(b"".join(out), dtype=np.int16)
    expected = (stereo.astype(np.int32).sum(axis=1) // 2).astype(np.int16)
    np.testing.assert_array_equal(mono, expected)


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    window = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(window))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize("hz", [440.0, 1000.0, 3000.0])
def test_48k_stereo_to_16k_mono_keeps_count_and_frequency(hz: float) -> None:
    seconds = 1.0
    mono48 = sine(int(48000 * seconds), 48000, hz)
    stereo = np.repeat(mono48, 2)  # L == R
    conv = InputConverter(16000, 20)
    out: list[bytes] = []
    for i in range(0, len(mono48), 960):
        chunk = stereo[2 * i : 2 * (i + 960)].tobytes()
        out += conv.push(rtc.AudioFrame(chunk, 48000, 2, len(chunk) // 4))
    assert {len(f) for f in out} == {640}  # session-sized frames only
    streamed = sum(len(f) for f in out) // 2
    # Before the flush only the resampler's latency is missing (MEDIUM: well under 2 frames).
    assert 16000 - 2 * 320 <= streamed <= 16000
    out += conv.flush()
    total = np.frombuffer(b"".join(out), dtype=np.int16)
    assert abs(len(total) - 16000) <= 16  # sample count right within resampler latency
    assert abs(_dominant_hz(total[1000:15000], 16000) - hz) < 2.0
    # Amplitude survives (no silence, no clipping).
    assert 6000 < np.abs(total[2000:14000]).max() <= 8200


def test_mono_resample_and_format_change_midstream() -> None:
    conv = InputConverter(16000, 20)
    a = sine(24000, 24000, 500)
    out: list[bytes] = []
    for i in range(0, len(a), 480):
        chunk = a[i : i + 480].tobytes()
        out += conv.push(rtc.AudioFrame(chunk, 24000, 1, 480))
    # The participant's track switches to 48 kHz stereo: a new resampler takes over.
    b = np.repeat(sine(48000, 48000, 500), 2)
    for i in range(0, len(b) // 2, 960):
        chunk = b[2 * i : 2 * (i + 960)].tobytes()
        out += conv.push(rtc.AudioFrame(chunk, 48000, 2, 960))
    out += conv.flush()
    total = np.frombuffer(b"".join(out), dtype=np.int16)
    assert abs(len(total) - 32000) <= 2 * 320  # one resampler tail may be dropped at the switch
    assert abs(_dominant_hz(total[20000:31000], 16000) - 500) < 2.0


def test_reset_drops_buffered_audio() -> None:
    conv = PcmConverter(24000, 20)
    assert conv.push_pcm(b"\x01\x00" * 100, 24000) == []
    conv.reset()
    assert conv.flush() == []


def test_bad_format_raises() -> None:
    with pytest.raises(ValueError):
        PcmConverter(16000).push_pcm(b"\x00\x00", 0, 1)
