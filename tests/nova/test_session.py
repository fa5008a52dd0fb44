"""The Nova session against the Bedrock emulator: turns, tools, text, config, secrets."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest

import agent.s2s as s2s
from agent.audio.sink import MemorySink
from agent.bridge import Bridge
from agent.s2s import (
    ConfigError,
    EventType,
    HistoryMessage,
    ProviderError,
    S2SError,
    SessionClosedError,
    ToolDefinition,
    ToolResult,
)
from agent.tools import ToolRegistry
from plugins.nova import NovaS2S, NovaSession
from tests.emulators.bedrock import (
    NOVA_2_SONIC,
    NOVA_2_SONIC_US,
    SECRET_KEY,
    SESSION_TOKEN,
    Scenario,
    ToolCallSpec,
    Turn,
)

from .conftest import (
    Events,
    Mic,
    assert_closed_cleanly,
    audio_event_names,
    closed_cleanly,
    frame_tags,
    nova_config,
    settled,
    wav_pcm,
)

pytestmark = pytest.mark.timeout(30)

WEATHER_TOOL = ToolDefinition(
    name="get_weather",
    description="Current weather for a city",
    input_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


async def _start(config: s2s.Config, **kwargs: Any) -> NovaSession:
    session = await s2s.new("nova", config).start(**kwargs)
    assert isinstance(session, NovaSession)
    return session


async def test_spoken_turn(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(
            turns=(
                Turn(
                    user_text="What's the weather in Paris?",
                    reply_text="Sunny and 21.",
                    reply_audio_ms=800,
                ),
            )
        )
    )
    session = await _start(nova_config(emu.url))
    assert session.input_format.sample_rate == 16000 and session.input_format.frame_ms == 32
    assert session.input_format.frame_bytes == 1024
    assert session.output_format.sample_rate == 24000
    assert isinstance(session, s2s.Session)
    events = Events(session)
    mic = Mic(session)
    await mic.play(wav_pcm("weather_paris.wav"))
    await mic.silence(0.6)
    await events.wait_for(EventType.TURN_END)
    await mic.silence(0.2)
    await session.close()
    await settled(emu)
    await events.wait(lambda: events.ended)

    transcripts = events.of(EventType.TRANSCRIPT)
    assert [(t.text, t.final) for t in transcripts] == [("What's the weather in Paris?", True)]
    texts = events.of(EventType.TEXT_OUTPUT)
    assert [(t.text, t.final) for t in texts] == [("Sunny and 21.", False), ("Sunny and 21.", True)]
    audio = b"".join(e.audio or b"" for e in events.of(EventType.AUDIO_OUTPUT))
    assert len(audio) == 800 * 24000 * 2 // 1000  # 24 kHz PCM16, the whole reply
    turn_ends = events.of(EventType.TURN_END)
    assert len(turn_ends) == 1
    turn_ids = {e.turn_id for e in events.of(EventType.AUDIO_OUTPUT)} | {turn_ends[0].turn_id}
    assert len(turn_ids) == 1 and None not in turn_ids
    assert not events.of(EventType.ERROR)

    [record] = emu.streams
    assert record.signature_failures == 0
    assert closed_cleanly(record), record.notes
    names = audio_event_names(record)
    assert names[:5] == ["sessionStart", "promptStart", "contentStart", "textInput", "contentEnd"]
    assert names[-4:] == ["contentStart", "contentEnd", "promptEnd", "sessionEnd"][-3:] or names[
        -3:
    ] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert record.audio_bytes == mic.sent * 1024  # (a lagging writer may merge two frames)
    assert frame_tags(record.audio_in) == list(range(mic.sent))
    prompt = record.events[1]["event"]["promptStart"]
    assert prompt["audioOutputConfiguration"]["sampleRateHertz"] == 24000
    assert prompt["audioOutputConfiguration"]["voiceId"] == "matthew"
    # The history recorded for a later stream holds the exchange.
    assert session.history() == [
        HistoryMessage("user", "What's the weather in Paris?"),
        HistoryMessage("assistant", "Sunny and 21."),
    ]
    with pytest.raises(SessionClosedError):
        await session.send_audio(b"\x00" * 1024)


async def test_tool_call_round_trip_direct(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(
            turns=(
                Turn(
                    user_text="Weather in Paris?",
                    reply_text="Here it is: {tool_result}",
                    tool_call=ToolCallSpec("get_weather", {"city": "Paris"}, double_encode=True),
                ),
            )
        )
    )
    session = await _start(nova_config(emu.url), tools=[WEATHER_TOOL])
    events = Events(session)
    mic = Mic(session)
    await mic.utterance()
    await events.wait_for(EventType.TOOL_CALL)
    [call_event] = events.of(EventType.TOOL_CALL)
    call = call_event.tool_call
    assert call is not None and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}  # decoded once, not a JSON string
    await session.send_tool_result(ToolResult(call.id, '{"temp_c": 21}'))
    # A second answer to the same call never reaches the service.
    await session.send_tool_result(ToolResult(call.id, '{"temp_c": 99}'))
    await events.wait_for(EventType.TURN_END)
    await session.close()
    await settled(emu)

    [record] = emu.streams
    results = [
        e["event"]["toolResult"]["content"] for e in record.events if "toolResult" in e["event"]
    ]
    assert results == ['{"temp_c":21}']
    assert record.turns[0].tool_result == '{"temp_c":21}'
    tools = record.events[1]["event"]["promptStart"]["toolConfiguration"]["tools"]
    assert json.loads(tools[0]["toolSpec"]["inputSchema"]["json"]) == WEATHER_TOOL.input_schema
    final = [e.text for e in events.of(EventType.TEXT_OUTPUT) if e.final]
    assert final == ['Here it is: {"temp_c":21}']
    assert call_event.turn_id == events.of(EventType.TURN_END)[0].turn_id
    assert closed_cleanly(record) and not events.of(EventType.ERROR)


@pytest.mark.parametrize(
    ("content", "is_error", "expected"),
    [
        ("it is sunny, 21 degrees", False, {"result": "it is sunny, 21 degrees"}),
        ("upstream timed out", True, {"error": "upstream timed out"}),
        ("[1, 2, 3]", False, {"result": [1, 2, 3]}),
    ],
)
async def test_bad_tool_result_payload_is_wrapped(
    bedrock_emulator: Any, content: str, is_error: bool, expected: dict[str, Any]
) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(
            turns=(Turn(reply_text="ok", tool_call=ToolCallSpec("get_weather", {"city": "Oslo"})),)
        )
    )
    session = await _start(nova_config(emu.url), tools=[WEATHER_TOOL])
    events = Events(session)
    mic = Mic(session)
    await mic.utterance()
    await events.wait_for(EventType.TOOL_CALL)
    call = events.of(EventType.TOOL_CALL)[0].tool_call
    assert call is not None
    await session.send_tool_result(ToolResult("no-such-call", "{}"))  # dropped, not sent
    await session.send_tool_result(ToolResult(call.id, content, is_error=is_error))
    await events.wait_for(EventType.TURN_END)
    await session.close()
    await settled(emu)
    [record] = emu.streams
    sent = [
        e["event"]["toolResult"]["content"] for e in record.events if "toolResult" in e["event"]
    ]
    assert [json.loads(s) for s in sent] == [expected]
    assert record.exceptions_sent == [] and closed_cleanly(record)


async def test_nova2_text_input_and_endpointing(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(turns=(Turn(reply_text="Hello, how can I help?"),))
    )
    config = s2s.Config(
        model=NOVA_2_SONIC_US,
        voice="olivia",
        latency_target="low",
        extra=nova_config(emu.url).extra,
    )
    session = await _start(config)
    events = Events(session)
    await session.send_text("Greet the user.")
    mic = Mic(session)
    feeder = asyncio.create_task(mic.silence(1.5))
    await events.wait_for(EventType.TURN_END)
    await feeder
    await session.close()
    await settled(emu)
    [record] = emu.streams
    assert record.model_id == NOVA_2_SONIC_US
    start = record.events[0]["event"]["sessionStart"]
    assert start["turnDetectionConfiguration"] == {"endpointingSensitivity": "HIGH"}
    assert record.turns[0].trigger == "text" and record.turns[0].transcript == "Greet the user."
    interactive = [
        e["event"]["contentStart"]
        for e in record.events
        if "contentStart" in e["event"] and e["event"]["contentStart"].get("type") == "TEXT"
    ]
    assert [(c["role"], c["interactive"]) for c in interactive] == [
        ("SYSTEM", False),
        ("USER", True),
    ]
    assert all(c["textInputConfiguration"] == {"mediaType": "text/plain"} for c in interactive)
    # The emulator echoes the typed text as the user transcript: it is in the history once.
    assert session.history() == [
        HistoryMessage("user", "Greet the user."),
        HistoryMessage("assistant", "Hello, how can I help?"),
    ]
    assert closed_cleanly(record)


@pytest.mark.parametrize("latency", ["low", "medium", "high"])
def test_latency_target_mapping(latency: str) -> None:
    nova2 = NovaS2S(s2s.Config(model=NOVA_2_SONIC, latency_target=latency))  # type: ignore[arg-type]
    assert nova2.settings.endpointing == {"low": "HIGH", "medium": "MEDIUM", "high": "LOW"}[latency]
    v1 = NovaS2S(s2s.Config(latency_target=latency))  # type: ignore[arg-type]
    assert v1.settings.endpointing is None


async def test_v1_send_text_is_refused(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator()
    session = await _start(nova_config(emu.url))
    with pytest.raises(S2SError) as info:
        await session.send_text("hello")
    assert info.value.code == "unsupported" and "text input" in info.value.message
    await session.close()
    await settled(emu)
    assert closed_cleanly(emu.streams[0])


async def test_history_is_sent_before_audio(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator()
    history = [
        HistoryMessage("assistant", "Welcome!"),  # a leading assistant message is dropped
        HistoryMessage("user", "My name is Ana."),
        HistoryMessage("user", "I live in Lisbon."),  # merged with the previous USER
        HistoryMessage("assistant", "Nice to meet you, Ana."),
    ]
    session = await _start(nova_config(emu.url), history=history, instructions="Be kind.")
    await session.close()
    await settled(emu)
    [record] = emu.streams
    blocks: list[tuple[str, str]] = []
    role = ""
    for event in record.events:
        body = event["event"]
        if "contentStart" in body:
            role = (
                body["contentStart"]["role"] if body["contentStart"]["type"] == "TEXT" else "AUDIO"
            )
            if role == "AUDIO":
                blocks.append(("AUDIO", ""))
        elif "textInput" in body:
            blocks.append((role, body["textInput"]["content"]))
    assert blocks == [
        ("SYSTEM", "Be kind."),
        ("USER", "My name is Ana. I live in Lisbon."),
        ("ASSISTANT", "Nice to meet you, Ana."),
        ("AUDIO", ""),
    ]
    assert closed_cleanly(record) and record.exceptions_sent == []


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (s2s.Config(voice="robot"), "valid voices: tiffany, matthew"),
        (s2s.Config(model="amazon.nova-3-sonic"), "unknown Nova Sonic model"),
        (s2s.Config(model=NOVA_2_SONIC, voice="greta"), "valid voices: matthew"),
        (s2s.Config(language="xx-XX"), "no amazon.nova-sonic-v1:0 voice speaks"),
        (s2s.Config(extra={"max_tokens": "many"}), "max_tokens"),
        (s2s.Config(extra={"aws_access_key_id": "AKIA"}), "must be given together"),
    ],
)
def test_bad_config_fails_in_factory(config: s2s.Config, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        s2s.new("nova", config)
    assert needle in str(info.value)


async def test_bad_voice_or_model_in_start_makes_no_request(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator()
    provider = s2s.new("nova", nova_config(emu.url))
    with pytest.raises(ConfigError, match="valid voices"):
        await provider.start(voice="robot")
    with pytest.raises(ConfigError, match="unknown Nova Sonic model"):
        await provider.start(model="amazon.titan-text")
    # A model switch re-validates the configured voice for the new model.
    provider_amy = s2s.new("nova", nova_config(emu.url, voice="greta"))
    with pytest.raises(ConfigError, match="greta"):
        await provider_amy.start(model=NOVA_2_SONIC)
    await asyncio.sleep(0.05)
    assert emu.streams == []


async def test_service_rejection_is_a_clear_error(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(scenario=Scenario(voices={}))  # serves no model
    with pytest.raises(ProviderError) as info:
        await _start(nova_config(emu.url))
    assert info.value.code == "validation"
    assert info.value.message == "The provided model identifier is invalid."
    assert not info.value.recoverable
    assert len(emu.streams) == 1  # not retried


async def test_wrong_secret_is_not_retried(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator()
    with pytest.raises(ProviderError) as info:
        await _start(nova_config(emu.url, aws_secret_access_key="not-the-secret"))
    assert "InvalidSignatureException" in info.value.message
    assert len(emu.streams) == 1


async def test_secrets_never_logged(
    bedrock_emulator: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials from the environment chain with a session token; DEBUG logs everywhere."""
    from tests.emulators.bedrock import ACCESS_KEY, BedrockEmulator  # noqa: F401

    emu = await bedrock_emulator(session_token=SESSION_TOKEN)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    caplog.set_level(logging.DEBUG)
    extra = {"base_url": emu.url, "region": "us-east-1", "retry_base_s": 0.01}
    provider = s2s.new("nova", s2s.Config(extra=extra))
    context = s2s.ConversationContext(session_id="sess-7", conversation_id="conv-3")
    session = await _start(provider.config, tools=[WEATHER_TOOL], context=context)
    events = Events(session)
    mic = Mic(session)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END)
    await session.close()
    await settled(emu)
    assert emu.streams[0].signature_failures == 0 and closed_cleanly(emu.streams[0])
    # Static keys given in code: not in reprs either.
    static = s2s.new("nova", nova_config(emu.url))
    text = caplog.text + repr(static) + repr(static.config) + repr(session) + repr(provider)
    text += repr(static.settings)  # type: ignore[attr-defined]
    assert SECRET_KEY not in text
    assert base64.b64encode(SECRET_KEY.encode()).decode() not in text
    assert SESSION_TOKEN not in caplog.text  # the SDK logs request headers at DEBUG
    assert "X-Amz-Security-Token', value=['***" in caplog.text
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("plugins.nova.session")]
    assert ours and all("provider=nova model=amazon.nova-sonic-v1:0" in m for m in ours)
    assert all("session_id=sess-7 conversation_id=conv-3" in m for m in ours)


async def test_tool_call_round_trip_through_bridge(bedrock_emulator: Any) -> None:
    """agent.tools runs the tool and agent.bridge sends its result back once."""

    registry = ToolRegistry()
    calls: list[str] = []

    @registry.tool
    def get_weather(city: str) -> dict[str, Any]:
        """Current weather for a city.

        Args:
            city: The city name.
        """
        calls.append(city)
        return {"city": city, "temp_c": 21}

    emu = await bedrock_emulator(
        scenario=Scenario(
            turns=(
                Turn(
                    reply_text="Here: {tool_result}",
                    tool_call=ToolCallSpec("get_weather", {"city": "Paris"}, double_encode=True),
                ),
            )
        )
    )
    session = await _start(nova_config(emu.url), tools=registry.definitions())
    sink = MemorySink(24000, clock="instant")
    bridge = Bridge(session, sink, tools=registry)
    runner = asyncio.create_task(bridge.run())
    mic = Mic(session)
    await mic.play(wav_pcm("weather_paris.wav"))
    await mic.silence(0.6)
    await emu.wait_for(lambda: bool(emu.streams[0].turns and emu.streams[0].turns[0].end))
    await bridge.close()
    await runner
    await settled(emu)
    assert calls == ["Paris"]
    [record] = emu.streams
    results = [e["event"]["toolResult"] for e in record.events if "toolResult" in e["event"]]
    assert len(results) == 1
    assert json.loads(results[0]["content"]) == {"city": "Paris", "temp_c": 21}
    assert record.turns[0].end == "END_TURN"
    assert_closed_cleanly(record)
    assert sink.captured_bytes == record.turns[0].audio_bytes_sent  # all reply audio played
