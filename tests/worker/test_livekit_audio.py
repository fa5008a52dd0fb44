"""The LiveKit-facing audio path with the real rtc SDK, no server: the agent's voice goes
Bridge -> LiveKitSink -> rtc.AudioSource -> LocalAudioTrack -> AudioStream (what a
subscriber hears); the microphone comes AudioSource -> track -> AudioStream.from_track at the
session's rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from livekit import rtc

from agent.audio import LiveKitSink
from agent.bridge import Bridge
from tests.support.scripted import ScriptedSession

from .fakes import Microphone, until

VOICED_RMS = 1000.0


@dataclass
class Listener:
    """Counts what a subscriber of the agent's track receives."""

    rates: set[int] = field(default_factory=set)
    sizes: set[int] = field(default_factory=set)
    voiced_ms: float = 0.0
    last_voiced_at: float = 0.0

    def add(self, frame: rtc.AudioFrame) -> None:
        self.rates.add(frame.sample_rate)
        self.sizes.add(frame.samples_per_channel)
        samples = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64)
        if samples.size and float(np.sqrt(np.mean(samples**2))) >= VOICED_RMS:
            self.voiced_ms += frame.samples_per_channel * 1000 / frame.sample_rate
            self.last_voiced_at = time.monotonic()


@asynccontextmanager
async def agent_voice(rate: int = 24000) -> AsyncIterator[tuple[Bridge, ScriptedSession, Listener]]:
    session = ScriptedSession(output_rate=rate)
    source = rtc.AudioSource(rate, 1, queue_size_ms=100)
    track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
    stream = rtc.AudioStream.from_track(track=track, sample_rate=rate, num_channels=1)
    listener = Listener()

    async def listen() -> None:
        async for event in stream:
            listener.add(event.frame)

    bridge = Bridge(session, LiveKitSink(source))
    tasks = [asyncio.create_task(bridge.run()), asyncio.create_task(listen())]
    try:
        yield bridge, session, listener
    finally:
        await bridge.close()
        await stream.aclose()
        await asyncio.gather(*tasks)
        await source.aclose()


async def test_reply_is_heard_whole_at_the_output_rate() -> None:
    async with agent_voice(24000) as (bridge, session, listener):
        started = time.monotonic()
        await session.reply(600, "t1")  # arrives at once, faster than real time
        await until(lambda: bridge.state == "speaking")
        await until(lambda: bridge.state == "listening", timeout=3)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.1)
    assert listener.rates == {24000}
    assert listener.sizes <= {240, 480}  # 10 or 20 ms frames
    assert 500 <= listener.voiced_ms <= 700
    assert 0.5 <= elapsed <= 1.2  # paced by the source in real time, not dumped at once
    assert 550 <= bridge.played_ms() <= 650


async def test_played_position_follows_real_time() -> None:
    async with agent_voice() as (bridge, session, _):
        await session.reply(2000, "t1", end=False)
        await until(lambda: bridge.state == "speaking")
        started = time.monotonic()
        await asyncio.sleep(0.5)
        played, elapsed = bridge.played_ms(), (time.monotonic() - started) * 1000
        # played = pushed - queued: within the source's queue (100 ms) of the wall clock.
        assert abs(played - elapsed) <= 150, (played, elapsed)


async def test_interrupt_clears_what_is_queued_at_once() -> None:
    async with agent_voice() as (bridge, session, listener):
        sink = bridge._sink
        await session.reply(3000, "t1", end=False)
        await until(lambda: bridge.state == "speaking")
        await asyncio.sleep(0.4)
        assert sink.queued_ms > 0
        await session.interrupted("t1")
        await until(lambda: bridge.state == "listening", timeout=1)
        assert sink.queued_ms == 0.0
        stopped = time.monotonic()
        await asyncio.sleep(0.4)
    assert 300 <= session.interrupts[0] <= 700  # type: ignore[operator]
    # The subscriber stopped hearing the reply (allowing one frame in flight).
    assert listener.last_voiced_at <= stopped + 0.05
    assert listener.voiced_ms < 800


async def test_microphone_arrives_resampled_to_the_session_rate() -> None:
    mic = Microphone(sample_rate=48000)
    stream = rtc.AudioStream.from_track(
        track=mic.track, sample_rate=16000, num_channels=1, frame_size_ms=20, capacity=100
    )
    received: list[rtc.AudioFrame] = []

    async def read() -> None:
        async for event in stream:
            received.append(event.frame)

    reader = asyncio.create_task(read())
    try:
        await mic.speak(300)
        await until(lambda: len(received) >= 10)
    finally:
        await stream.aclose()
        await reader
        await mic.aclose()
    assert {f.sample_rate for f in received} == {16000}
    assert {f.num_channels for f in received} == {1}
    assert {f.samples_per_channel for f in received} == {320}
