"""Bridge benchmark: CPU per full-duplex session-second and added latency, vs a bare loop.

    uv run python bench/bridge.py [--sessions 1,100] [--duration 8] [--cpu 0 | --no-pin]

Each session gets real-time paced room audio (20 ms frames, 48 kHz stereo, so the bridge
downmixes and resamples to the session's 16 kHz mono) and the scripted provider replies
continuously in real time (24 kHz, 20 ms chunks), into a real-time MemorySink: full duplex.

Two runs per session count, in the same process:
  baseline  a bare loop that just moves the bytes (frames -> send_audio, events -> sink)
  bridge    agent.bridge.Bridge doing the real work
Figures: CPU ms per session-second (process CPU time, all threads, over the measuring
window), latency input frame -> send_audio and AUDIO_OUTPUT emitted -> sink.capture
(p50/p99), and the p99 lateness of the simulated room's frame clock (is the loop keeping up?).
The process is pinned to one CPU by default, so "N sessions on one core" is what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import rtc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.audio import InputConverter, MemorySink
from agent.bridge import Bridge
from agent.s2s import EventType
from tests.support.scripted import ScriptedSession

ROOM_RATE, ROOM_CHANNELS, FRAME_MS = 48000, 2, 20
FRAME_SAMPLES = ROOM_RATE * FRAME_MS // 1000
WARMUP_S = 1.0


@dataclass
class Stats:
    measuring: bool = False
    up: list[float] = field(default_factory=list)  # input frame -> send_audio, seconds
    down: list[float] = field(default_factory=list)  # AUDIO_OUTPUT -> sink.capture, seconds
    lag: list[float] = field(default_factory=list)  # room frame lateness, seconds


def room_audio() -> bytes:
    """Two seconds of a speech-band chord, 48 kHz stereo."""
    t = np.arange(2 * ROOM_RATE) / ROOM_RATE
    mono = 3000 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 1300 * t))
    return np.repeat(mono.astype(np.int16), ROOM_CHANNELS).tobytes()


class Room:
    """One participant's microphone: 20 ms frames on a real-time clock."""

    def __init__(self, pcm: bytes, phase_s: float, stats: Stats) -> None:
        self.pcm, self.phase_s, self.stats = pcm, phase_s, stats
        self.last_frame = 0.0

    async def frames(self, stop_at: float) -> AsyncIterator[rtc.AudioFrame]:
        loop = asyncio.get_running_loop()
        step = FRAME_SAMPLES * ROOM_CHANNELS * 2
        deadline = loop.time() + self.phase_s
        offset = 0
        while deadline < stop_at:
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif self.stats.measuring:
                self.stats.lag.append(-delay)
            if offset + step > len(self.pcm):
                offset = 0
            frame = rtc.AudioFrame(
                self.pcm[offset : offset + step], ROOM_RATE, ROOM_CHANNELS, FRAME_SAMPLES
            )
            offset += step
            self.last_frame = time.perf_counter()
            yield frame
            deadline += FRAME_MS / 1000


class TimedSink(MemorySink):
    """A real-time sink that records how long after its emission each frame arrives."""

    def __init__(self, session: ScriptedSession, stats: Stats) -> None:
        super().__init__(session.output_format.sample_rate, record=False)
        self.session, self.stats = session, stats

    async def capture(self, pcm: bytes) -> None:
        if self.stats.measuring:
            self.stats.down.append(time.perf_counter() - self.session.last_audio_emit)
        await super().capture(pcm)


def make_session(room: Room, stats: Stats) -> ScriptedSession:
    session = ScriptedSession(
        reply_after_frames=50,  # a 0.9 s reply after every 1 s of input: duplex
        reply_ms=900,  # done before the next trigger: a steady rhythm
        reply_chunk_ms=FRAME_MS,
        reply_speed=1.0,
        record_audio=False,
    )

    def on_audio(_: bytes) -> None:
        if stats.measuring:
            stats.up.append(time.perf_counter() - room.last_frame)

    session.on_audio = on_audio
    return session


async def bare_loop(
    session: ScriptedSession, sink: MemorySink, frames: AsyncIterator[rtc.AudioFrame]
) -> None:
    """The baseline: moves bytes both ways with no conversion, framing or bookkeeping."""

    async def up() -> None:
        async for frame in frames:
            if session.closed:
                return
            await session.send_audio(frame.data.cast("B").tobytes())

    async def down() -> None:
        async for event in session.events():
            if event.type is EventType.AUDIO_OUTPUT and event.audio:
                await sink.capture(event.audio)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(up())
        tg.create_task(down())


@dataclass
class Result:
    mode: str
    sessions: int
    cpu_ms_per_session_s: float
    up_p50: float
    up_p99: float
    down_p50: float
    down_p99: float
    lag_p99: float
    replies: int


async def scenario(mode: str, sessions: int, duration_s: float) -> Result:
    stats = Stats()
    pcm = room_audio()
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + WARMUP_S + duration_s + 0.5
    scripted: list[ScriptedSession] = []
    bridges: list[Bridge] = []
    async with asyncio.TaskGroup() as tg:
        for i in range(sessions):
            room = Room(pcm, phase_s=(i / sessions) * FRAME_MS / 1000, stats=stats)
            session = make_session(room, stats)
            sink = TimedSink(session, stats)
            scripted.append(session)
            if mode == "bridge":
                bridge = Bridge(session, sink, source=room.frames(stop_at))
                bridges.append(bridge)
                tg.create_task(bridge.run())
            else:
                tg.create_task(bare_loop(session, sink, room.frames(stop_at)))
        await asyncio.sleep(WARMUP_S)
        gc.collect()
        stats.measuring = True
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(duration_s)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        stats.measuring = False
        for bridge in bridges:
            await bridge.close()
        for session in scripted:
            await session.close()

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) * 1000 if values else float("nan")

    return Result(
        mode,
        sessions,
        cpu * 1000 / (sessions * wall),
        pct(stats.up, 50),
        pct(stats.up, 99),
        pct(stats.down, 50),
        pct(stats.down, 99),
        pct(stats.lag, 99) if stats.lag else 0.0,
        sum(s.replies for s in scripted),
    )


def resampler_hold_ms() -> float:
    """Audio the input resampler holds back (its algorithmic latency), measured."""
    conv = InputConverter(16000, FRAME_MS)
    frame = rtc.AudioFrame(bytes(FRAME_SAMPLES * 4), ROOM_RATE, ROOM_CHANNELS, FRAME_SAMPLES)
    produced = sum(len(f) // 2 for _ in range(200) for f in conv.push(frame))
    produced += conv._chunker.pending_bytes // 2
    return (200 * 320 - produced) / 16.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", default="1,100", help="comma-separated session counts")
    parser.add_argument("--duration", type=float, default=8.0, help="measuring seconds per run")
    parser.add_argument(
        "--cpu", type=int, default=None, help="pin to this CPU (default: first allowed)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    args = parser.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}")
    counts = [int(n) for n in args.sessions.split(",")]

    print(f"input resampler (48k stereo -> 16k mono, MEDIUM) holds {resampler_hold_ms():.1f} ms")
    header = (
        f"{'sessions':>8} {'mode':>8} {'cpu ms/sess-s':>13} {'in p50':>7} {'in p99':>7}"
        f" {'out p50':>7} {'out p99':>7} {'clock lag p99':>13} {'replies':>7}"
    )
    print(header)
    results: dict[tuple[int, str], Result] = {}
    for n in counts:
        for mode in ("baseline", "bridge"):
            r = asyncio.run(scenario(mode, n, args.duration))
            results[(n, mode)] = r
            print(
                f"{n:>8} {mode:>8} {r.cpu_ms_per_session_s:>13.2f} {r.up_p50:>7.3f}"
                f" {r.up_p99:>7.3f} {r.down_p50:>7.3f} {r.down_p99:>7.3f} {r.lag_p99:>13.2f}"
                f" {r.replies:>7}"
            )
    print("\nbridge vs baseline (same run):")
    for n in counts:
        base, br = results[(n, "baseline")], results[(n, "bridge")]
        print(
            f"  {n:>3} sessions: CPU x{br.cpu_ms_per_session_s / base.cpu_ms_per_session_s:.2f}"
            f" (+{br.cpu_ms_per_session_s - base.cpu_ms_per_session_s:.2f} ms per session-second);"
            f" added p99 latency in {br.up_p99 - base.up_p99:+.3f} ms,"
            f" out {br.down_p99 - base.down_p99:+.3f} ms"
        )
    n = max(counts)
    bridge = results[(n, "bridge")]
    print(
        f"\nat {n} sessions the bridge costs {bridge.cpu_ms_per_session_s:.2f} ms CPU per"
        f" session-second (target <= 10): {n * bridge.cpu_ms_per_session_s / 10:.0f}% of one core,"
        f" about {1000 / bridge.cpu_ms_per_session_s:.0f} sessions per core by CPU"
    )


if __name__ == "__main__":
    main()
