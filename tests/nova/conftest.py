"""Fixtures and helpers for the Nova provider tests (real SDK client ↔ Bedrock emulator)."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import plugins.nova  # noqa: F401  (registers "nova")
from agent.s2s import Config, EventType, Session, SessionEvent
from tests.emulators.bedrock import ACCESS_KEY, REGION, SECRET_KEY, StreamRecord
from tests.emulators.bedrock.fixtures import bedrock_emulator, test_ca  # noqa: F401

FIXTURES = Path(__file__).parents[1] / "fixtures"
FRAME_BYTES = 1024  # 32 ms at 16 kHz PCM16


@pytest.fixture(autouse=True)
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach for real AWS settings, profiles or the instance metadata service."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


def nova_config(url: str, *, model: str | None = None, **extra: Any) -> Config:
    """A Config pointed at an emulator with its static test keys and fast retries."""
    options: dict[str, Any] = {
        "base_url": url,
        "region": REGION,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "retry_base_s": 0.05,
        "retry_max_s": 0.2,
        "close_timeout_s": 3.0,
    }
    options.update(extra)
    voice = options.pop("voice", None)
    return Config(model=model, voice=voice, extra=options)


def wav_pcm(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1
        return wav.readframes(wav.getnframes())


def tone(ms: int, hz: float = 300.0, amplitude: int = 4000) -> bytes:
    """A short voiced burst the emulator's energy endpointer treats as speech."""
    import math

    n = 16000 * ms // 1000
    samples = (int(amplitude * math.sin(2 * math.pi * hz * i / 16000)) for i in range(n))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


def tag(frame: bytes, index: int) -> bytes:
    """Stamp a frame number into its first two samples (small values: stays below any
    speech threshold) so the emulator's received audio shows which frames arrived."""
    head = (index // 256 + 1).to_bytes(2, "little") + (index % 256).to_bytes(2, "little")
    return head + frame[4:]


def frame_tags(audio: bytes | bytearray) -> list[int]:
    """Frame numbers found in a stream's received audio (aligned 1024-byte frames)."""
    out: list[int] = []
    for i in range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES):
        hi = int.from_bytes(audio[i : i + 2], "little")
        lo = int.from_bytes(audio[i + 2 : i + 4], "little")
        if 1 <= hi < 200 and lo < 256:
            out.append((hi - 1) * 256 + lo)
    return out


class Mic:
    """Sends tagged 32 ms frames to a session in real time and remembers what it sent."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.sent = 0
        self._next_at: float | None = None

    async def play(self, pcm: bytes, *, realtime: bool = True) -> None:
        pcm = pcm + b"\x00" * (-len(pcm) % FRAME_BYTES)
        for i in range(0, len(pcm), FRAME_BYTES):
            if realtime:
                now = time.monotonic()
                if self._next_at is None:
                    self._next_at = now
                delay = self._next_at - now
                if delay > 0:
                    await asyncio.sleep(delay)
                self._next_at += 0.032
            await self.session.send_audio(tag(pcm[i : i + FRAME_BYTES], self.sent))
            self.sent += 1

    async def silence(self, seconds: float) -> None:
        await self.play(b"\x00" * (int(seconds * 16000) * 2))

    async def utterance(self, speech_ms: int = 320, silence_s: float = 0.5) -> None:
        """A short burst of "speech" and enough silence for the emulator to end the turn."""
        await self.play(tone(speech_ms))
        await self.silence(silence_s)


class Events:
    """Collects a session's events in the background; wait for conditions on them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.items: list[tuple[float, SessionEvent]] = []
        self.ended = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.session.events():
            self.items.append((time.monotonic(), event))
            self._changed.set()
        self.ended = True
        self._changed.set()

    def of(self, kind: EventType) -> list[SessionEvent]:
        return [e for _, e in self.items if e.type is kind]

    def times(self, kind: EventType) -> list[float]:
        return [t for t, e in self.items if e.type is kind]

    async def wait(self, predicate: Callable[[], bool], within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, kind: EventType, count: int = 1, within_s: float = 10.0) -> None:
        await self.wait(lambda: len(self.of(kind)) >= count, within_s)

    async def stop(self) -> None:
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def settled(emu: Any, within_s: float = 5.0) -> None:
    """Wait until the emulator has finished recording every stream."""
    await emu.wait_for(lambda: all(s.finished for s in emu.streams), timeout=within_s)


def closed_cleanly(record: StreamRecord) -> bool:
    """The stream was ended the documented way: audio contentEnd (if audio was open),
    promptEnd, sessionEnd, then the signed empty frame, with a valid signature chain, and
    the emulator's own verdict agrees (`ended_cleanly`: END_STREAM seen, no block left
    open, nothing after sessionEnd, no reset). Call it after `settled(emu)`."""
    names = audio_event_names(record)
    return (
        record.finished
        and record.ended_cleanly
        and record.client_end_frame
        and record.signature_failures == 0
        and names[-2:] == ["promptEnd", "sessionEnd"]
        and not record.notes
    )


def assert_closed_cleanly(*records: StreamRecord) -> None:
    """`closed_cleanly` for each record, saying why not when it fails."""
    for record in records:
        assert closed_cleanly(record), (
            record.id,
            record.finished,
            record.unclean_reasons,
            record.notes,
            audio_event_names(record)[-4:],
        )


def audio_event_names(record: StreamRecord) -> list[str]:
    return [n for n in record.event_names if n != "audioInput"]
