"""Protocol rules: each violation is answered like the service (validationException frame),
and bad model ids are refused before the stream (typed HTTP errors)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_sdk_bedrock_runtime.models import ResourceNotFoundException, ValidationException

from tests.emulators.bedrock import NOVA_2_SONIC, NOVA_2_SONIC_US, NOVA_SONIC_V1, Faults, Scenario
from tests.emulators.bedrock.fixtures import BedrockEmulatorFactory
from tests.emulators.bedrock.rules import InputProtocol, ProtocolViolation

from .nova_client import (
    BidiStream,
    audio_input,
    audio_start,
    closing,
    ev,
    opening,
    prompt_start,
    session_start,
    silence,
    text_block,
    text_input,
    text_start,
    tool_result,
)

pytestmark = pytest.mark.timeout(30)

# The per-model voice lists of the protocol notes (shared/protocols/nova_sonic.md).
NOTES_V1_VOICES = [
    "tiffany",
    "amy",
    "matthew",
    "ambre",
    "florian",
    "beatrice",
    "lorenzo",
    "greta",
    "lennart",
    "lupe",
    "carlos",
]
NOTES_NOVA_2_VOICES = [
    "matthew",
    "tiffany",
    "amy",
    "olivia",
    "lupe",
    "carlos",
    "ambre",
    "florian",
    "tina",
    "lennart",
    "beatrice",
    "lorenzo",
    "carolina",
    "leo",
    "arjun",
    "kiara",
]

NO_TIMERS = Faults(idle_timeout_s=None, connection_limit_s=None)
HISTORY_FIRST = "Chat history should be sent completely before streaming audio."
BASE = [session_start(), prompt_start()]


def _with(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    name, body = next(iter(event["event"].items()))
    return ev(name, {**body, **changes})


def _without(event: dict[str, Any], key: str) -> dict[str, Any]:
    name, body = next(iter(event["event"].items()))
    return ev(name, {k: v for k, v in body.items() if k != key})


VIOLATIONS: list[tuple[str, str, list[dict[str, Any]], str]] = [
    (
        "audio block inside an open text block",
        NOVA_2_SONIC,
        [*opening(), text_start("h1", "USER"), text_input("h1", "Hi"), audio_start()],
        HISTORY_FIRST,
    ),
    (
        "audio frame inside an open text block",
        NOVA_2_SONIC,
        [*opening(), text_start("h1", "USER"), audio_input(silence(32))],
        HISTORY_FIRST,
    ),
    (
        "history after the audio block",
        NOVA_2_SONIC,
        [*opening(), audio_start(), *text_block("h1", "USER", "late history")],
        HISTORY_FIRST,
    ),
    (
        "text contentStart without textInputConfiguration",
        NOVA_2_SONIC,
        [*BASE, text_start("s1", "SYSTEM", config=False)],
        "requires textInputConfiguration",
    ),
    (
        "system prompt not first",
        NOVA_2_SONIC,
        [*BASE, *text_block("h1", "USER", "Hi"), *text_block("s1", "SYSTEM", "Be brief.")],
        "system prompt must be the first",
    ),
    (
        "history starting with ASSISTANT",
        NOVA_2_SONIC,
        [*opening(), *text_block("h1", "ASSISTANT", "Hello")],
        "must start with a USER",
    ),
    (
        "history roles not alternating",
        NOVA_2_SONIC,
        [*opening(), *text_block("h1", "USER", "a"), *text_block("h2", "USER", "b")],
        "must alternate",
    ),
    (
        "promptName mismatch",
        NOVA_2_SONIC,
        [*BASE, _with(text_start("s1", "SYSTEM"), promptName="other-prompt")],
        "does not match the active prompt",
    ),
    (
        "contentName not open",
        NOVA_2_SONIC,
        [*opening(), text_input("nope", "text")],
        "is not an open content block",
    ),
    (
        "contentName reused",
        NOVA_2_SONIC,
        [*opening(), *text_block("system-1", "USER", "again")],
        "reused",
    ),
    (
        "promptStart before sessionStart",
        NOVA_2_SONIC,
        [prompt_start()],
        "promptStart must follow sessionStart",
    ),
    (
        "content before promptStart",
        NOVA_2_SONIC,
        [session_start(), text_start("s1", "SYSTEM")],
        "outside an active prompt",
    ),
    ("sessionStart twice", NOVA_2_SONIC, [session_start(), session_start()], "once, first"),
    (
        "unknown voice",
        NOVA_2_SONIC,
        [session_start(), prompt_start(voice="nobody")],
        "voiceId 'nobody' is not supported",
    ),
    (
        "Nova 2 voice on v1",
        NOVA_SONIC_V1,
        [session_start(), prompt_start(voice="olivia")],
        "voiceId 'olivia' is not supported",
    ),
    (
        "v1-only voice on Nova 2",
        NOVA_2_SONIC,
        [session_start(), prompt_start(voice="greta")],
        "voiceId 'greta' is not supported",
    ),
    (
        "flat endpointingSensitivity",
        NOVA_2_SONIC,
        [session_start(endpointingSensitivity="HIGH")],
        "use turnDetectionConfiguration.endpointingSensitivity",
    ),
    (
        "turnDetectionConfiguration on v1",
        NOVA_SONIC_V1,
        [session_start(turnDetectionConfiguration={"endpointingSensitivity": "HIGH"})],
        "not supported by amazon.nova-sonic-v1:0",
    ),
    (
        "bad endpointingSensitivity value",
        NOVA_2_SONIC,
        [session_start(turnDetectionConfiguration={"endpointingSensitivity": "MAX"})],
        "HIGH, MEDIUM or LOW",
    ),
    (
        "toolResult for an unknown toolUseId",
        NOVA_2_SONIC,
        [*opening(), audio_start(), *tool_result("t1", "no-such-tool-use", '{"ok": true}')],
        "does not match an outstanding tool use",
    ),
    (
        "interactive text on v1",
        NOVA_SONIC_V1,
        [*opening(), *text_block("u1", "USER", "typed", interactive=True)],
        "does not accept interactive text input",
    ),
    ("unknown event", NOVA_2_SONIC, [session_start(), ev("bogusEvent", {})], "unknown event"),
    (
        "audio input sample rate",
        NOVA_2_SONIC,
        [
            *opening(),
            ev(
                "contentStart",
                {
                    **audio_start()["event"]["contentStart"],
                    "audioInputConfiguration": {
                        **audio_start()["event"]["contentStart"]["audioInputConfiguration"],
                        "sampleRateHertz": 44100,
                    },
                },
            ),
        ],
        "must be 8000 or 16000",
    ),
    (
        "audio output without voice",
        NOVA_2_SONIC,
        [
            session_start(),
            ev(
                "promptStart",
                {
                    **prompt_start()["event"]["promptStart"],
                    "audioOutputConfiguration": _without(
                        ev("x", prompt_start()["event"]["promptStart"]["audioOutputConfiguration"]),
                        "voiceId",
                    )["event"]["x"],
                },
            ),
        ],
        "voiceId None is not supported",
    ),
]


@pytest.mark.parametrize(
    ("model_id", "events", "message"),
    [pytest.param(m, e, msg, id=case) for case, m, e, msg in VIOLATIONS],
)
async def test_violation_answered_with_validation_exception(
    bedrock_emulator: BedrockEmulatorFactory,
    model_id: str,
    events: list[dict[str, Any]],
    message: str,
) -> None:
    emu = await bedrock_emulator(scenario=Scenario(close_grace_s=1.0), faults=NO_TIMERS)
    bidi = await BidiStream.open(emu, model_id=model_id)
    try:
        await bidi.start_receiving()
        await bidi.send(*events)
        await bidi.wait_ended()
        # The client may still close politely after the error; the service accepts that.
        await bidi.close_input()
    finally:
        await bidi.aclose()
    assert isinstance(bidi.error, ValidationException), bidi.names()
    assert message in str(bidi.error.message)
    rec = emu.streams[0]
    assert rec.exception_types == ["validationException"]
    assert message in rec.exceptions_sent[0][1]
    await emu.wait_for(lambda: rec.finished)
    assert rec.server_end_stream and not rec.ended_cleanly
    assert "no sessionEnd" in rec.unclean_reasons


@pytest.mark.parametrize(
    ("model_id", "voices"),
    [
        (NOVA_SONIC_V1, NOTES_V1_VOICES),
        (NOVA_2_SONIC, NOTES_NOVA_2_VOICES),
        (NOVA_2_SONIC_US, NOTES_NOVA_2_VOICES),
    ],
)
def test_voices_per_model_follow_the_protocol_notes(model_id: str, voices: list[str]) -> None:
    def accepted(voice: str) -> bool:
        rules = InputProtocol(model_id, Scenario())
        rules.handle(session_start())
        try:
            rules.handle(prompt_start(voice=voice))
        except ProtocolViolation as exc:
            assert f"voiceId {voice!r} is not supported" in exc.message
            return False
        return True

    candidates = {*NOTES_V1_VOICES, *NOTES_NOVA_2_VOICES, "nobody", "Matthew"}
    assert {v for v in candidates if accepted(v)} == set(voices)


async def test_valid_history_then_audio_is_accepted(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    emu = await bedrock_emulator(faults=NO_TIMERS)
    bidi = await BidiStream.open(emu)
    events = [
        session_start(turnDetectionConfiguration={"endpointingSensitivity": "MEDIUM"}),
        prompt_start(voice="olivia"),
        *text_block("system-1", "SYSTEM", "Be brief."),
        *text_block("h1", "USER", "Earlier question"),
        *text_block("h2", "ASSISTANT", "Earlier answer"),
        audio_start(),
        audio_input(silence(32)),
        *closing(),
    ]
    try:
        await bidi.start_receiving()
        await bidi.send(*events)
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert bidi.error is None and bidi.received == []
    rec = emu.streams[0]
    await emu.wait_for(lambda: rec.finished)
    assert rec.events == events and rec.ended_cleanly


async def test_events_after_session_end_are_counted(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    emu = await bedrock_emulator(faults=NO_TIMERS)
    bidi = await BidiStream.open(emu)
    try:
        await bidi.start_receiving()
        await bidi.send(*opening(), audio_start(), *closing("audio-1"))
        await bidi.wait_ended()  # the service ends its side after sessionEnd
        await bidi.send(audio_input(silence(32)), audio_input(silence(32)))
        await bidi.close_input()
    finally:
        await bidi.aclose()
    rec = emu.streams[0]
    await emu.wait_for(lambda: rec.finished)
    assert bidi.error is None
    assert rec.events_after_session_end == 2
    assert rec.unclean_reasons == ["events after sessionEnd"]
    assert rec.event_names[-2:] == ["audioInput", "audioInput"]
    assert rec.audio_frames == 0  # not taken by the model
    assert not rec.ended_cleanly


async def test_history_limits_when_configured(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(max_history_messages=2, max_history_message_bytes=10), faults=NO_TIMERS
    )
    bidi = await BidiStream.open(emu)
    try:
        await bidi.start_receiving()
        await bidi.send(*opening(), *text_block("h1", "USER", "x" * 11))
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert isinstance(bidi.error, ValidationException)
    assert "exceeds 10 bytes" in str(bidi.error.message)


@pytest.mark.parametrize(
    ("model_id", "error"),
    [
        ("amazon.nova-sonic-v9:0", ValidationException),
        ("anthropic.claude-3-haiku-20240307-v1:0", ValidationException),
        ("eu.amazon.nova-2-sonic-v1:0", ResourceNotFoundException),
    ],
)
async def test_unknown_models_refused_before_the_stream(
    bedrock_emulator: BedrockEmulatorFactory, model_id: str, error: type[Exception]
) -> None:
    emu = await bedrock_emulator(faults=NO_TIMERS)
    bidi = await BidiStream.open(emu, model_id=model_id)
    try:
        with pytest.raises(error):
            await bidi.start_receiving()
    finally:
        await bidi.aclose()
    rec = emu.streams[0]
    assert rec.model_id == model_id
    assert rec.http_status == (404 if error is ResourceNotFoundException else 400)
    assert rec.http_error_type == error.__name__
    assert rec.events == []
