"""Fault injection, seen through the REAL SDK client."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from aws_sdk_bedrock_runtime.models import (
    InternalServerException,
    ModelStreamErrorException,
    ModelTimeoutException,
    ThrottlingException,
    ValidationException,
)

from tests.emulators.bedrock import (
    IDLE_TIMEOUT_MESSAGE,
    MODEL_TIMEOUT_MESSAGE,
    Faults,
    Scenario,
    Turn,
)
from tests.emulators.bedrock.fixtures import BedrockEmulatorFactory
from tests.emulators.bedrock.sdk import make_client

from .nova_client import (
    BidiStream,
    audio_start,
    closing,
    load_wav,
    more_than,
    opening,
    silence,
    text_block,
)

pytestmark = pytest.mark.timeout(30)

LONG_REPLY = Turn(user_text="Tell me more.", reply_text="Here is more.", reply_audio_ms=1000)
SCENARIO = Scenario(turns=(LONG_REPLY,), reply_pace=0, close_grace_s=0.5)


def _faults(**kwargs: Any) -> Faults:
    return Faults(**{"idle_timeout_s": None, "connection_limit_s": None, **kwargs})


async def _ask(bidi: BidiStream, question: str = "Tell me more.") -> None:
    await bidi.send(*text_block(f"user-{time.monotonic_ns()}", "USER", question, interactive=True))


async def _open_and_ask(emu: Any) -> BidiStream:
    bidi = await BidiStream.open(emu)
    await bidi.send(*opening(), audio_start())
    await bidi.start_receiving()
    await _ask(bidi)
    return bidi


async def test_connection_limit_model_timeout(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(connection_limit_s=0.4))
    bidi = await BidiStream.open(emu)
    started = time.monotonic()
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        await bidi.send_audio(silence(320))
        await bidi.wait_ended()
        lived = time.monotonic() - started
        await bidi.send(*closing())  # closing politely after the error is accepted
        await bidi.close_input()
    finally:
        await bidi.aclose()
    assert isinstance(bidi.error, ModelTimeoutException)
    assert bidi.error.message == MODEL_TIMEOUT_MESSAGE
    assert 0.35 < lived < 2.0
    rec = emu.streams[0]
    await emu.wait_for(lambda: rec.finished)
    assert rec.exception_types == ["modelTimeoutException"]
    assert rec.event_names[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert rec.client_end_stream and rec.unclean_reasons == []  # a polite close after the error


async def test_idle_timeout_after_silence(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(idle_timeout_s=0.5))
    bidi = await BidiStream.open(emu)
    started = time.monotonic()
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        while not bidi.ended.is_set() and time.monotonic() - started < 3:
            await bidi.send_audio(silence(32))  # silent audio does not count as activity
            await asyncio.sleep(0.032)
        idle_for = time.monotonic() - started
    finally:
        await bidi.aclose()
    assert isinstance(bidi.error, ValidationException)
    assert bidi.error.message == IDLE_TIMEOUT_MESSAGE
    assert 0.45 < idle_for < 1.5
    assert emu.streams[0].audio_frames > 5


async def test_speech_keeps_the_idle_timer_away(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(Turn(reply_audio_ms=100),), reply_pace=0),
        faults=_faults(idle_timeout_s=0.6),
    )
    bidi = await BidiStream.open(emu)
    speech = load_wav("thank_you.wav")
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        # Real-time speech for 1.2 s: longer than the idle timeout, but never idle.
        for offset in range(0, 16000 * 2 * 6 // 5, 1024):
            await bidi.send_audio(speech[offset % len(speech) // 2 * 2 :][:1024])
            await asyncio.sleep(0.032)
        assert not bidi.ended.is_set(), bidi.names()
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert bidi.error is None


async def test_stream_reset_mid_reply(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(reset_on_turn=1))
    bidi = await _open_and_ask(emu)
    try:
        await bidi.wait_ended()
    finally:
        await bidi.aclose(close_input=False)
    names = bidi.names()
    assert "audioOutput" in names and names[-1] == "audioOutput"  # cut mid-audio
    assert 0 < len(bidi.events("audioOutput")) < 10
    rec = emu.streams[0]
    await emu.wait_for(lambda: rec.finished)
    assert rec.reset_by_server and rec.turns[0].end == "RESET"
    assert emu.faults_fired == [("reset", 1)]


async def test_reset_fires_once_and_next_stream_works(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(reset_on_turn=1))
    client = await make_client(emu.url)
    first = await BidiStream.open(emu, client=client)
    try:
        await first.send(*opening(), audio_start())
        await first.start_receiving()
        await _ask(first)
        await first.wait_ended()
    finally:
        await first.aclose(close_input=False)
    second = await BidiStream.open(emu, client=client)
    try:
        await second.send(*opening(), audio_start())
        await second.start_receiving()
        await _ask(second)
        await second.wait_for_event("contentEnd", type="AUDIO", stopReason="END_TURN")
        await second.send(*closing())
        await second.close_input()
        await second.wait_ended()
    finally:
        await second.aclose()
    assert second.error is None
    assert [t.number for s in emu.streams for t in s.turns] == [1, 2]


async def test_bad_crc_frame(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(bad_crc_on_turn=1))
    bidi = await _open_and_ask(emu)
    try:
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert type(bidi.error).__name__ == "ChecksumMismatch"
    assert emu.streams[0].turns[0].end == "BAD_CRC"


async def test_truncated_frame(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(truncated_frame_on_turn=1))
    bidi = await _open_and_ask(emu)
    try:
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert bidi.error is not None, bidi.names()
    assert type(bidi.error).__name__ in ("InvalidEventBytes", "EventError"), repr(bidi.error)
    assert emu.streams[0].turns[0].end == "TRUNCATED"


@pytest.mark.parametrize(
    ("member", "error"),
    [
        ("internalServerException", InternalServerException),
        ("modelStreamErrorException", ModelStreamErrorException),
    ],
)
async def test_internal_error_frame(
    bedrock_emulator: BedrockEmulatorFactory, member: Any, error: type[Exception]
) -> None:
    emu = await bedrock_emulator(
        scenario=SCENARIO,
        faults=_faults(internal_error_on_turn=1, internal_error_type=member),
    )
    bidi = await _open_and_ask(emu)
    try:
        await bidi.wait_ended()
        await bidi.send(*closing())
        await bidi.close_input()
    finally:
        await bidi.aclose()
    assert isinstance(bidi.error, error)
    assert "System instability detected. Please retry your request." in str(bidi.error)
    assert "audioOutput" in bidi.names()
    assert emu.streams[0].exception_types == [member]


async def test_throttling_first_attempts(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(throttle_first=2))
    client = await make_client(emu.url)
    for _ in range(2):
        bidi = await BidiStream.open(emu, client=client)
        try:
            with pytest.raises(ThrottlingException) as caught:
                await bidi.start_receiving()
        finally:
            await bidi.aclose()
        assert "Too many requests" in str(caught.value.message)
    bidi = await BidiStream.open(emu, client=client)
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert bidi.error is None
    assert [s.http_status for s in emu.streams] == [429, 429, 200]
    assert [s.http_error_type for s in emu.streams] == ["ThrottlingException"] * 2 + [None]


async def test_stall_mid_reply(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(stall_on_turn=1, stall_s=0.5))
    bidi = await _open_and_ask(emu)
    arrivals: list[float] = []
    try:
        while len(arrivals) < 10:
            seen = len(arrivals)
            await bidi.wait_until(more_than("audioOutput", seen))
            count = len(bidi.events("audioOutput"))
            arrivals.extend([time.monotonic()] * (count - seen))
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) >= 0.45
    assert gaps.index(max(gaps)) == 4  # halfway through the 10 chunks
    assert bidi.error is None


async def test_slow_reads(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO, faults=_faults(read_delay_s=0.02))
    bidi = await BidiStream.open(emu)
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        started = time.monotonic()
        await bidi.send_audio(silence(32 * 20))
        await emu.wait_for(lambda: emu.streams[0].audio_frames == 20, 5.0)
        took = time.monotonic() - started
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert took >= 20 * 0.02 * 0.9
