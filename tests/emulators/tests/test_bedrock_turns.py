"""Conversations through the REAL aws-sdk-bedrock-runtime client (CRT transport, TLS, h2)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest

from tests.emulators.bedrock import (
    INTERRUPTED_MARKER,
    NOVA_2_SONIC,
    NOVA_2_SONIC_US,
    NOVA_SONIC_V1,
    Faults,
    Scenario,
    ToolCallSpec,
    Turn,
    dominant_frequency,
)
from tests.emulators.bedrock.fixtures import BedrockEmulatorFactory
from tests.emulators.bedrock.sdk import make_client

from .nova_client import (
    FRAME_BYTES,
    BidiStream,
    audio_start,
    closing,
    load_wav,
    more_than,
    name_of,
    opening,
    silence,
    text_block,
    tool_result,
    tool_spec,
)

pytestmark = pytest.mark.timeout(30)

NO_TIMERS = Faults(idle_timeout_s=None, connection_limit_s=None)
WEATHER = Turn(
    user_text="What is the weather in Paris?",
    reply_text="It is sunny in Paris.",
    reply_audio_ms=500,
    tone_hz=440.0,
)
JOKE = Turn(
    user_text="Stop, tell me a joke instead.",
    reply_text="Why did the chicken cross the road?",
    reply_audio_ms=400,
    tone_hz=660.0,
)


def _reply_audio(items: list[Any]) -> bytes:
    return b"".join(
        base64.b64decode(i["event"]["audioOutput"]["content"])
        for i in items
        if isinstance(i, dict) and name_of(i) == "audioOutput"
    )


def _stage(body: dict[str, Any]) -> str:
    return str(json.loads(body["additionalModelFields"])["generationStage"])


def _turn_done(count: int) -> Any:
    """Predicate: `count` assistant FINAL text blocks have ended."""

    def check(items: list[Any]) -> bool:
        ends = [
            i
            for i in items
            if isinstance(i, dict)
            and name_of(i) == "usageEvent"
            and i["event"]["usageEvent"]["details"]["delta"]["output"]["textTokens"] > 0
        ]
        return len(ends) >= count

    return check


async def test_full_turn_with_wav_fixture(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(WEATHER,), reply_pace=0), faults=NO_TIMERS
    )
    bidi = await BidiStream.open(emu)
    speech = load_wav("weather_paris.wav") + silence(600)
    sent_events = [*opening(), audio_start()]
    try:
        await bidi.send(*sent_events)
        await bidi.start_receiving()
        await bidi.send_audio(speech)
        await bidi.wait_until(_turn_done(1))
        await bidi.send(*closing())
        await bidi.wait_for_event("completionEnd")
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()

    assert bidi.error is None
    names = bidi.names()
    assert names == [
        "completionStart",
        *["contentStart", "textOutput", "contentEnd"],  # USER transcript (FINAL)
        "usageEvent",
        *["contentStart", "textOutput", "contentEnd"],  # ASSISTANT SPECULATIVE
        "contentStart",
        *["audioOutput"] * 5,  # 500 ms in 100 ms chunks
        "contentEnd",
        *["contentStart", "textOutput", "contentEnd"],  # ASSISTANT FINAL
        "usageEvent",
        "completionEnd",
    ]
    starts = bidi.events("contentStart")
    assert [(s["type"], s["role"]) for s in starts] == [
        ("TEXT", "USER"),
        ("TEXT", "ASSISTANT"),
        ("AUDIO", "ASSISTANT"),
        ("TEXT", "ASSISTANT"),
    ]
    assert [_stage(s) for s in starts if s["type"] == "TEXT"] == ["FINAL", "SPECULATIVE", "FINAL"]
    assert starts[2]["audioOutputConfiguration"]["sampleRateHertz"] == 24000
    assert starts[2]["audioOutputConfiguration"]["voiceId"] == "matthew"
    texts = [t["content"] for t in bidi.events("textOutput")]
    assert texts == [WEATHER.user_text, WEATHER.reply_text, WEATHER.reply_text]
    ends = bidi.events("contentEnd")
    assert [e["stopReason"] for e in ends] == ["END_TURN", "PARTIAL_TURN", "END_TURN", "END_TURN"]
    ids = {(e["sessionId"], e["promptName"], e["completionId"]) for e in bidi.events("contentEnd")}
    assert len(ids) == 1 and next(iter(ids))[1] == "prompt-1"

    audio = _reply_audio(bidi.received)
    assert len(audio) == 24000 * 2 * 500 // 1000
    assert abs(dominant_frequency(audio, 24000) - 440.0) < 5.0

    rec = emu.streams[0]
    await emu.wait_for(lambda: rec.finished)
    assert rec.model_id == NOVA_2_SONIC
    assert rec.path.startswith("/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream")
    frame_count = -(-len(speech) // FRAME_BYTES)
    assert rec.event_names == [
        *[name_of(e) for e in sent_events],
        *["audioInput"] * frame_count,
        "contentEnd",
        "promptEnd",
        "sessionEnd",
    ]
    assert rec.events[: len(sent_events)] == sent_events
    assert rec.audio_frames == frame_count and rec.audio_bytes == len(speech)
    assert bytes(rec.audio_in) == speech
    assert rec.signature_failures == 0 and rec.exceptions_sent == []
    assert rec.ended_cleanly and rec.server_end_stream and rec.unclean_reasons == []
    (turn,) = rec.turns
    assert turn.trigger == "audio" and turn.end == "END_TURN" and not turn.interrupted
    assert turn.first_audio_at is not None and turn.first_event_at is not None
    assert turn.first_event_at >= turn.triggered_at
    assert rec.sent_events == [i for i in bidi.received if isinstance(i, dict)]


@pytest.mark.parametrize("double_encode", [False, True])
async def test_tool_call_waits_for_result(
    bedrock_emulator: BedrockEmulatorFactory, double_encode: bool
) -> None:
    turn = Turn(
        user_text="What is the weather in Paris?",
        reply_text="The forecast says {tool_result}.",
        reply_audio_ms=200,
        tool_call=ToolCallSpec("get_weather", {"city": "Paris"}, double_encode=double_encode),
    )
    emu = await bedrock_emulator(scenario=Scenario(turns=(turn,), reply_pace=0), faults=NO_TIMERS)
    bidi = await BidiStream.open(emu)
    try:
        await bidi.send(*opening(tools=[tool_spec("get_weather")]), audio_start())
        await bidi.start_receiving()
        await bidi.send_audio(load_wav("weather_paris.wav") + silence(600))
        tool_use = (await bidi.wait_for_event("toolUse"))["event"]["toolUse"]
        tool_end = await bidi.wait_for_event("contentEnd", stopReason="TOOL_USE")
        assert tool_end["event"]["contentEnd"]["type"] == "TOOL"
        assert tool_use["toolName"] == "get_weather"
        arguments = json.loads(tool_use["content"])
        if double_encode:
            assert isinstance(arguments, str)
            arguments = json.loads(arguments)
        assert arguments == {"city": "Paris"}
        # The model waits for the result: nothing of the reply yet.
        await asyncio.sleep(0.2)
        assert "audioOutput" not in bidi.names()
        result = json.dumps({"forecast": "sunny, 21 C"})
        await bidi.send(*tool_result("tool-1", tool_use["toolUseId"], result))
        await bidi.wait_until(_turn_done(1))
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    texts = [t["content"] for t in bidi.events("textOutput")]
    assert texts[1] == texts[2] == f"The forecast says {result}."
    rec = emu.streams[0]
    await emu.wait_for(lambda: rec.finished)
    assert rec.turns[0].tool_result == result
    assert rec.turns[0].tool_use_id == tool_use["toolUseId"]
    assert rec.ended_cleanly


async def test_reply_audio_paced_faster_than_real_time(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    turn = Turn(reply_text="A long answer.", reply_audio_ms=1200)
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(turn,), reply_pace=4.0, reply_chunk_ms=100), faults=NO_TIMERS
    )
    bidi = await BidiStream.open(emu)
    arrivals: list[float] = []
    try:
        await bidi.send(*opening(), *text_block("user-1", "USER", "Hi", interactive=True))
        await bidi.start_receiving()
        while len(arrivals) < 12:
            before = len(bidi.events("audioOutput"))
            await bidi.wait_until(more_than("audioOutput", before))
            arrivals.extend(
                time.monotonic() for _ in range(len(bidi.events("audioOutput")) - before)
            )
        await bidi.send(prompt_end_event(), session_end_event())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    spread = arrivals[-1] - arrivals[0]
    # 12 chunks of 100 ms at 4x: the last one is due 11 * 25 ms = 275 ms after the first.
    assert 0.22 < spread < 0.6, spread


def prompt_end_event() -> dict[str, Any]:
    return closing(None)[0]


def session_end_event() -> dict[str, Any]:
    return closing(None)[1]


async def test_barge_in_while_reply_audio_is_sending(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    long_reply = Turn(user_text=WEATHER.user_text, reply_text="A long story.", reply_audio_ms=3000)
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(long_reply, JOKE), reply_pace=2.0), faults=NO_TIMERS
    )
    bidi = await BidiStream.open(emu)
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        await bidi.send_audio(load_wav("weather_paris.wav") + silence(600))
        await bidi.wait_for_event("audioOutput")
        await bidi.send_audio(load_wav("stop_joke.wav") + silence(600))
        await bidi.wait_until(_turn_done(2))
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()

    ends = bidi.events("contentEnd")
    audio_ends = [e for e in ends if e["type"] == "AUDIO"]
    assert [e["stopReason"] for e in audio_ends] == ["INTERRUPTED", "END_TURN"]
    texts = [t["content"] for t in bidi.events("textOutput")]
    assert INTERRUPTED_MARKER in texts
    marker_at = texts.index(INTERRUPTED_MARKER)
    assert texts[marker_at - 1] == "A long story."  # inside the FINAL block of the reply
    assert texts[marker_at + 1 :] == [JOKE.user_text, JOKE.reply_text, JOKE.reply_text]
    text_ends = [e["stopReason"] for e in ends if e["type"] == "TEXT"]
    assert text_ends == [
        "END_TURN",
        "PARTIAL_TURN",
        "INTERRUPTED",
        "END_TURN",
        "PARTIAL_TURN",
        "END_TURN",
    ]
    rec = emu.streams[0]
    first, second = rec.turns
    assert first.interrupted and first.end == "INTERRUPTED"
    assert first.audio_ms < 3000
    assert not second.interrupted and second.transcript == JOKE.user_text
    audio_second = _reply_audio(bidi.received[bidi.names().index("completionStart") :])
    assert abs(dominant_frequency(audio_second[-24000 * 2 * 400 // 1000 :], 24000) - 660.0) < 5.0


async def test_barge_in_marker_after_end_turn(bedrock_emulator: BedrockEmulatorFactory) -> None:
    reply = Turn(user_text=WEATHER.user_text, reply_text="Quick answer.", reply_audio_ms=2000)
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(reply, JOKE), reply_pace=0), faults=NO_TIMERS
    )
    bidi = await BidiStream.open(emu)
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        await bidi.send_audio(load_wav("weather_paris.wav") + silence(600))
        await bidi.wait_until(_turn_done(1))  # all of the reply has arrived (END_TURN)
        await bidi.send_audio(load_wav("stop_joke.wav") + silence(600))
        await bidi.wait_until(_turn_done(2))
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    ends = bidi.events("contentEnd")
    assert [e["stopReason"] for e in ends if e["type"] == "AUDIO"] == ["END_TURN", "END_TURN"]
    names = bidi.names()
    texts = [t["content"] for t in bidi.events("textOutput")]
    assert texts[:4] == [WEATHER.user_text, "Quick answer.", "Quick answer.", INTERRUPTED_MARKER]
    # The marker comes in its own ASSISTANT FINAL block, after the reply's END_TURN.
    marker_index = next(
        i
        for i, item in enumerate(bidi.received)
        if name_of(item) == "textOutput"
        and item["event"]["textOutput"]["content"] == INTERRUPTED_MARKER
    )
    block_start = bidi.received[marker_index - 1]["event"]["contentStart"]
    assert block_start["role"] == "ASSISTANT" and _stage(block_start) == "FINAL"
    assert bidi.received[marker_index + 1]["event"]["contentEnd"]["stopReason"] == "INTERRUPTED"
    assert names.index("usageEvent", 5) < marker_index
    assert emu.streams[0].turns[0].interrupted


async def test_speech_after_playout_is_a_new_turn_not_a_barge_in(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    reply = Turn(user_text=WEATHER.user_text, reply_text="Short.", reply_audio_ms=200)
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(reply, JOKE), reply_pace=0), faults=NO_TIMERS
    )
    bidi = await BidiStream.open(emu)
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        await bidi.send_audio(load_wav("weather_paris.wav") + silence(600))
        await bidi.wait_until(_turn_done(1))
        first_audio = emu.streams[0].turns[0].first_audio_at
        assert first_audio is not None
        remaining = first_audio + 0.25 - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
        await bidi.send_audio(load_wav("stop_joke.wav") + silence(600))
        await bidi.wait_until(_turn_done(2))
    finally:
        await bidi.aclose()
    assert INTERRUPTED_MARKER not in [t["content"] for t in bidi.events("textOutput")]
    assert [t.interrupted for t in emu.streams[0].turns] == [False, False]


async def test_interactive_text_triggers_a_reply_on_nova_2(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(WEATHER,), reply_pace=0), faults=NO_TIMERS
    )
    bidi = await BidiStream.open(emu)
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        sent_at = time.monotonic()
        await bidi.send(*text_block("user-1", "USER", "Typed question", interactive=True))
        await bidi.wait_for_event("completionStart")
        round_trip = time.monotonic() - sent_at
        await bidi.wait_until(_turn_done(1))
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    texts = [t["content"] for t in bidi.events("textOutput")]
    assert texts == ["Typed question", WEATHER.reply_text, WEATHER.reply_text]
    await emu.wait_for(lambda: emu.streams[0].finished)
    assert emu.streams[0].turns[0].trigger == "text"
    assert emu.streams[0].ended_cleanly
    assert round_trip < 1.0


@pytest.mark.parametrize("model_id", [NOVA_SONIC_V1, NOVA_2_SONIC, NOVA_2_SONIC_US])
async def test_models_served(bedrock_emulator: BedrockEmulatorFactory, model_id: str) -> None:
    emu = await bedrock_emulator(faults=NO_TIMERS)
    bidi = await BidiStream.open(emu, model_id=model_id)
    try:
        await bidi.start_receiving()
        await bidi.send(*opening(voice="tiffany"), audio_start(), *closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert bidi.error is None
    await emu.wait_for(lambda: emu.streams[0].finished)
    assert emu.streams[0].model_id == model_id and emu.streams[0].ended_cleanly


async def test_streams_share_a_connection_and_turn_numbers(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(WEATHER, JOKE), reply_pace=0), faults=NO_TIMERS
    )
    client = await make_client(emu.url)
    first = await BidiStream.open(emu, client=client)
    await first.send(*opening(), audio_start())
    await first.start_receiving()
    # Opened once the first connection is up, so the CRT puts it on the same connection.
    second = await BidiStream.open(emu, client=client)
    speech = load_wav("weather_paris.wav") + silence(600)
    try:
        await second.send(*opening(), audio_start())
        await second.start_receiving()
        half = len(speech) // 4 * 2
        await first.send_audio(speech[:half])
        await second.send_audio(silence(300))  # interleaved on the other stream: no turn
        await first.send_audio(speech[half:])
        await first.wait_until(_turn_done(1))
        await second.send_audio(load_wav("stop_joke.wav") + silence(600))
        await second.wait_until(_turn_done(1))
        for bidi in (first, second):
            await bidi.send(*closing())
            await bidi.close_input()
            await bidi.wait_ended()
    finally:
        await first.aclose()
        await second.aclose()
    await emu.wait_for(lambda: all(s.finished for s in emu.streams))
    one, two = emu.streams
    assert one.connection_id == two.connection_id
    assert [t.number for t in one.turns] == [1] and [t.number for t in two.turns] == [2]
    assert two.turns[0].transcript == JOKE.user_text
    assert bytes(one.audio_in) == speech
    assert one.ended_cleanly and two.ended_cleanly


async def test_keep_audio_false_keeps_counts_not_bytes(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(WEATHER,), reply_pace=0), faults=NO_TIMERS, keep_audio=False
    )
    bidi = await BidiStream.open(emu)
    speech = load_wav("weather_paris.wav") + silence(600)
    try:
        await bidi.send(*opening(), audio_start())
        await bidi.start_receiving()
        await bidi.send_audio(speech)
        await bidi.wait_until(_turn_done(1))
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    rec = emu.streams[0]
    await emu.wait_for(lambda: rec.finished)
    assert rec.audio_bytes == len(speech) and rec.audio_in == bytearray()
    audio_events = [e for e in rec.events if name_of(e) == "audioInput"]
    assert audio_events[0]["event"]["audioInput"]["content"] == "<1368 base64 chars>"
    assert len(_reply_audio(bidi.received)) == 24000  # what was sent is unaffected
