"""Sinks: the in-memory playout clock, WAV in/out, and LiveKitSink over the real rtc SDK."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc

from agent.audio import AudioSink, LiveKitSink, MemorySink, WavSink, wav_frames

from .helpers import sine

pytestmark = pytest.mark.timeout(20)

RATE = 24000
FRAME = RATE * 20 // 1000 * 2  # 20 ms


def test_sinks_implement_the_protocol() -> None:
    assert isinstance(MemorySink(), AudioSink)
    assert isinstance(WavSink.__new__(WavSink), AudioSink)


async def test_manual_clock_plays_only_when_advanced() -> None:
    sink = MemorySink(RATE, clock="manual", queue_ms=100)
    pcm = sine(RATE // 10, RATE).tobytes()  # 100 ms
    for i in range(0, len(pcm), FRAME):
        await sink.capture(pcm[i : i + FRAME])
    assert sink.queued_ms == pytest.approx(100)
    assert sink.played == b""
    sink.advance(30)
    assert sink.queued_ms == pytest.approx(70)
    assert sink.played == pcm[: len(sink.played)] and len(sink.played) == 30 * RATE * 2 // 1000
    sink.advance(1000)
    assert sink.played == pcm and sink.queued_ms == 0


async def test_capture_waits_while_full_and_clear_releases_it() -> None:
    sink = MemorySink(RATE, clock="manual", queue_ms=40)
    frame = b"\x01\x00" * (FRAME // 2)
    await sink.capture(frame)
    await sink.capture(frame)
    third = asyncio.create_task(sink.capture(frame))
    await asyncio.sleep(0.01)
    assert not third.done()  # queue full: the caller is paced
    sink.advance(20)
    await asyncio.wait_for(third, 1)
    assert sink.queued_ms == pytest.approx(40)
    fourth = asyncio.create_task(sink.capture(frame))
    await asyncio.sleep(0.01)
    sink.clear()  # barge-in: drops the queue and the capture still waiting
    await asyncio.wait_for(fourth, 1)
    assert sink.queued_ms == 0
    assert sink.clear_count == 1 and sink.cleared_bytes == 2 * FRAME
    sink.advance(1000)
    assert sink.played_bytes == FRAME


async def test_realtime_clock_plays_at_wall_clock_speed() -> None:
    sink = MemorySink(RATE, queue_ms=1000)
    await sink.capture(b"\x00\x00" * (RATE // 5))  # 200 ms
    start = time.monotonic()
    await asyncio.sleep(0.1)
    played = sink.played_ms
    elapsed = (time.monotonic() - start) * 1000
    assert played == pytest.approx(elapsed, abs=15)
    await sink.wait_for_playout()
    assert sink.played_ms == pytest.approx(200) and sink.queued_ms == 0


async def test_realtime_backpressure_paces_a_fast_producer() -> None:
    sink = MemorySink(RATE, queue_ms=60, record=False)
    start = time.monotonic()
    for _ in range(15):  # 300 ms of audio into a 60 ms queue
        await sink.capture(b"\x00" * FRAME)
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed <= 0.4
    assert sink.played == b"" and sink.captured_bytes == 15 * FRAME


async def test_instant_clock_never_queues() -> None:
    sink = MemorySink(RATE, clock="instant")
    await sink.capture(b"\x02\x00" * 10)
    assert sink.queued_ms == 0 and sink.played == b"\x02\x00" * 10
    with pytest.raises(RuntimeError):
        sink.advance(10)


async def test_wav_sink_and_wav_frames_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    pcm = sine(RATE // 2, RATE).tobytes()  # 500 ms
    sink = WavSink(path, RATE)
    await sink.capture(pcm)
    sink.close()
    sink.close()  # idempotent
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
    got = [f async for f in wav_frames(path, frame_ms=20, realtime=False)]
    assert all(f.sample_rate == RATE and f.num_channels == 1 for f in got)
    assert [f.samples_per_channel for f in got] == [480] * 25
    assert b"".join(bytes(f.data.cast("B")) for f in got) == pcm


async def test_wav_frames_realtime_pacing_and_stereo(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(48000)
        wav.writeframes(np.zeros(48000 // 5 * 2 + 100, np.int16).tobytes())  # 200 ms + 50 samples
    start = time.monotonic()
    got = [f async for f in wav_frames(path)]
    elapsed = time.monotonic() - start
    assert [f.samples_per_channel for f in got] == [960] * 10 + [50]
    assert got[0].num_channels == 2
    assert 0.18 <= elapsed <= 0.4


async def test_realtime_wav_sink_leaves_out_cleared_audio(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sink = WavSink(path, RATE, realtime=True, queue_ms=1000)
    await sink.capture(b"\x01\x00" * (RATE // 2))  # 500 ms
    await asyncio.sleep(0.1)
    sink.clear()
    sink.close()
    with wave.open(str(path), "rb") as wav:
        frames = wav.getnframes()
    assert 0.08 * RATE <= frames <= 0.2 * RATE


async def test_wav_frames_rejects_non_pcm16(tmp_path: Path) -> None:
    path = tmp_path / "8bit.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(b"\x80" * 100)
    with pytest.raises(ValueError):
        [f async for f in wav_frames(path)]


# -- LiveKitSink over a real, local rtc.AudioSource (no server needed) ------------------------


async def test_livekit_sink_capture_queue_and_backpressure() -> None:
    sink = LiveKitSink.create(RATE, queue_ms=100)
    try:
        assert isinstance(sink, AudioSink) and sink.sample_rate == RATE
        frame = sine(480, RATE).tobytes()
        for _ in range(5):  # fills the 100 ms native queue without waiting
            await asyncio.wait_for(sink.capture(frame), 0.05)
        assert 60 <= sink.queued_ms <= 100
        start = time.monotonic()
        for _ in range(5):  # each further frame waits for ~20 ms of playout
            await sink.capture(frame)
        assert 0.06 <= time.monotonic() - start <= 0.3
        assert 60 <= sink.queued_ms <= 105
    finally:
        await sink.source.aclose()


async def test_livekit_sink_clear_empties_queue_and_drops_inflight_frame() -> None:
    sink = LiveKitSink.create(RATE, queue_ms=100)
    try:
        frame = b"\x00" * FRAME
        for _ in range(5):
            await sink.capture(frame)
        waiting = asyncio.create_task(sink.capture(frame))  # queue full: waits for room
        await asyncio.sleep(0.005)
        assert not waiting.done()
        assert 60 <= sink.queued_ms <= 100  # the waiting frame is not counted as queued
        sink.clear()
        assert sink.queued_ms == 0
        await asyncio.wait_for(waiting, 0.1)  # the waiter is released promptly
        # Its frame reached the native queue after the clear; the sink cleared again.
        assert sink.queued_ms == 0
        # The source still works afterwards, and wait_for_playout agrees with queued_ms.
        await sink.capture(frame)
        assert 10 <= sink.queued_ms <= 20
        await asyncio.wait_for(sink.source.wait_for_playout(), 0.5)
        assert sink.queued_ms == 0
    finally:
        await sink.source.aclose()


def test_livekit_sink_needs_mono() -> None:
    async def make() -> None:
        source = rtc.AudioSource(RATE, 2)
        try:
            with pytest.raises(ValueError):
                LiveKitSink(source)
        finally:
            await source.aclose()

    asyncio.run(make())
