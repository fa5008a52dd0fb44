"""Helpers for the core audio path, bridge, tools and telemetry tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
from livekit import rtc

from agent.bridge import Bridge


def sine(n: int, rate: int, hz: float = 440.0, amplitude: int = 8000) -> np.ndarray:
    """`n` samples of an int16 sine at `rate`."""
    return (np.sin(2 * np.pi * hz * np.arange(n) / rate) * amplitude).astype(np.int16)


async def frames(
    pcm: bytes, rate: int, channels: int = 1, frame_ms: int = 20, pace_s: float = 0.0
) -> AsyncIterator[rtc.AudioFrame]:
    """`pcm` as AudioFrames; pace_s sleeps between frames (0 still yields to the loop)."""
    step = rate * frame_ms // 1000 * 2 * channels
    for offset in range(0, len(pcm), step):
        chunk = pcm[offset : offset + step]
        yield rtc.AudioFrame(chunk, rate, channels, len(chunk) // (2 * channels))
        await asyncio.sleep(pace_s)


@asynccontextmanager
async def running(bridge: Bridge) -> AsyncIterator[asyncio.Task[None]]:
    """Run the bridge in a task; close it and await the task on exit."""
    task = asyncio.create_task(bridge.run())
    await asyncio.sleep(0)
    try:
        yield task
    finally:
        await bridge.close()
        await asyncio.wait_for(task, 5)


async def until(predicate: Callable[[], object], within: float = 3.0) -> None:
    """Poll until `predicate()` is true; TimeoutError otherwise. (Polling on purpose: the
    conditions span several objects that have no event to wait on.)"""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
