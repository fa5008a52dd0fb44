"""Renewal before the connection limit and recovery from every injected fault."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

import agent.s2s as s2s
from agent.s2s import EventType, ProviderError, ToolResult
from plugins.nova import NovaSession
from plugins.nova.transport import Connection
from tests.emulators.bedrock import Faults, Scenario, StreamRecord, ToolCallSpec, Turn

from .conftest import (
    Events,
    Mic,
    assert_closed_cleanly,
    closed_cleanly,
    frame_tags,
    nova_config,
    settled,
)

pytestmark = pytest.mark.timeout(40)


async def _start(config: s2s.Config, **kwargs: Any) -> NovaSession:
    session = await s2s.new("nova", config).start(**kwargs)
    assert isinstance(session, NovaSession)
    return session


def _covered(streams: list[StreamRecord], sent: int) -> None:
    """Every frame the mic sent reached a stream whose model processed it."""
    seen: set[int] = set()
    for record in streams:
        seen.update(frame_tags(record.audio_in))
    missing = sorted(set(range(sent)) - seen)
    assert not missing, f"{len(missing)} frames lost: {missing[:20]}"


def _history_blocks(record: StreamRecord) -> list[tuple[str, str]]:
    """(role, text) of the non-interactive text blocks sent before the audio block."""
    out: list[tuple[str, str]] = []
    role = ""
    for event in record.events:
        body = event["event"]
        if "contentStart" in body:
            start = body["contentStart"]
            if start["type"] == "AUDIO":
                break
            role = start["role"]
        elif "textInput" in body:
            out.append((role, body["textInput"]["content"]))
    return out


TWO_TURNS = Scenario(
    turns=(
        Turn(user_text="What's the weather?", reply_text="Sunny and warm.", reply_audio_ms=600),
        Turn(user_text="Thanks.", reply_text="You're welcome.", reply_audio_ms=600),
    )
)


async def test_renewal_is_gapless(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(scenario=TWO_TURNS)
    # Turn 1 starts ≈ 1.8 s in (past the renewal point); turn 2 ≈ 1 s after the handover
    # (before the new stream's renewal point), so exactly one renewal happens.
    session = await _start(nova_config(emu.url, renewal_after_s=1.2, max_session_s=30.0))
    events = Events(session)
    mic = Mic(session)
    await mic.silence(1.0)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END)
    # The handover waits until the reply has been heard (0.6 s + margin); audio keeps flowing.
    assert session.renewals == 0
    await mic.silence(1.0)
    assert session.renewals == 1
    await mic.utterance()
    await events.wait_for(EventType.TURN_END, 2)
    await mic.silence(0.1)
    await session.close()
    await settled(emu)

    streams = emu.accepted_streams
    assert len(streams) == 2
    old, new = streams
    assert closed_cleanly(old) and closed_cleanly(new), (old.event_names[-6:], old.unclean_reasons)
    assert old.signature_failures == new.signature_failures == 0
    assert [t.transcript for t in old.turns] == ["What's the weather?"]
    assert [t.transcript for t in new.turns] == ["Thanks."]
    assert _history_blocks(new)[1:] == [
        ("USER", "What's the weather?"),
        ("ASSISTANT", "Sunny and warm."),
    ]
    _covered(streams, mic.sent)
    old_tags, new_tags = frame_tags(old.audio_in), frame_tags(new.audio_in)
    assert old_tags == list(range(len(old_tags)))  # in order, nothing skipped
    # The new stream picks up at or before where the old one stopped (replay overlap).
    assert new_tags[0] <= old_tags[-1] + 1
    assert new_tags == list(range(new_tags[0], mic.sent))
    assert not events.of(EventType.ERROR)
    assert len(events.of(EventType.TURN_END)) == 2
    assert session.last_handover_ms is not None and session.last_handover_ms < 50
    # Reply delivery on the renewed stream is as quick as on the first one.
    first_audio = events.times(EventType.AUDIO_OUTPUT)
    turn_ids = [e.turn_id for e in events.of(EventType.AUDIO_OUTPUT)]
    second_turn_first = first_audio[turn_ids.index(turn_ids[-1])]
    assert new.turns[0].first_audio_at is not None
    assert second_turn_first - new.turns[0].first_audio_at < 0.25


async def test_deadline_renewal_during_silence(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator()
    session = await _start(nova_config(emu.url, renewal_after_s=0.4, max_session_s=0.8))
    events = Events(session)
    mic = Mic(session)
    await mic.silence(1.4)
    await session.close()
    await settled(emu)
    streams = emu.accepted_streams
    assert session.renewals == 1 and len(streams) == 2
    _covered(streams, mic.sent)
    assert all(closed_cleanly(s) for s in streams)
    assert not events.of(EventType.ERROR)


async def test_deadline_cuts_an_endless_reply(bedrock_emulator: Any) -> None:
    """Past the deadline a reply may finish for a short grace; then the handover cuts in."""
    emu = await bedrock_emulator(
        scenario=Scenario(
            turns=(Turn(reply_text="A very long answer.", reply_audio_ms=3000),), reply_pace=1.0
        )
    )
    session = await _start(nova_config(emu.url, renewal_after_s=0.9, max_session_s=1.0))
    events = Events(session)
    mic = Mic(session)
    feeder = asyncio.create_task(mic.utterance(silence_s=1.2))
    await events.wait_for(EventType.TURN_END)
    await feeder
    await session.close()
    await settled(emu)
    assert session.renewals == 1
    [turn_end] = events.of(EventType.TURN_END)
    audio = events.of(EventType.AUDIO_OUTPUT)
    assert all(e.turn_id == turn_end.turn_id for e in audio)
    assert 0 < sum(len(e.audio or b"") for e in audio) < 3000 * 48  # cut, not finished
    kinds = [e.type for _, e in events.items]
    assert EventType.AUDIO_OUTPUT not in kinds[kinds.index(EventType.TURN_END) :]
    _covered(emu.accepted_streams, mic.sent)
    assert_closed_cleanly(*emu.accepted_streams)  # the cut stream too
    assert not events.of(EventType.ERROR)


async def test_dead_standby_is_replaced(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(
        scenario=Scenario(
            turns=(Turn(reply_text="A long answer.", reply_audio_ms=1500),), reply_pace=1.5
        )
    )
    session = await _start(nova_config(emu.url, renewal_after_s=0.3, max_session_s=30.0))
    events = Events(session)
    mic = Mic(session)
    await mic.silence(0.4)
    feeder = asyncio.create_task(mic.utterance(silence_s=2.0))
    await events.wait_for(EventType.AUDIO_OUTPUT)
    async with asyncio.timeout(5):
        while session._standby is None:  # noqa: ASYNC110 - private state, no event to await
            await asyncio.sleep(0.01)
    doomed = session._standby
    # The client side of the standby ends (as if its connection dropped): it must be replaced.
    await doomed._stream.input_stream.close()
    await events.wait_for(EventType.TURN_END)
    await feeder
    for _ in range(30):  # the handover follows the reply's playout (1.5 s + margin)
        if session.renewals:
            break
        await mic.silence(0.1)
    await session.close()
    await settled(emu)
    streams = emu.accepted_streams
    assert len(streams) == 3, [s.event_names[:3] for s in streams]
    assert streams[1].audio_frames == 0  # the dead standby never took audio
    assert session.renewals == 1
    _covered([streams[0], streams[2]], mic.sent)
    assert_closed_cleanly(streams[0], streams[2])  # not the standby whose input was cut
    assert not events.of(EventType.ERROR)


async def test_stale_standby_is_refreshed(bedrock_emulator: Any) -> None:
    """A standby that waits too long (the service drops idle streams) is replaced."""
    emu = await bedrock_emulator(
        scenario=Scenario(
            turns=(Turn(reply_text="A long answer.", reply_audio_ms=1500),), reply_pace=1.5
        )
    )
    config = nova_config(emu.url, renewal_after_s=0.3, max_session_s=30.0, standby_max_age_s=0.6)
    session = await _start(config)
    events = Events(session)
    mic = Mic(session)
    await mic.silence(0.4)
    await mic.utterance(silence_s=1.0)
    await events.wait_for(EventType.TURN_END)
    for _ in range(30):
        if session.renewals:
            break
        await mic.silence(0.1)
    await session.close()
    await settled(emu)
    streams = emu.accepted_streams
    assert session.renewals == 1 and len(streams) >= 3
    assert all(s.audio_frames == 0 for s in streams[1:-1])  # the stale standbys
    assert all(closed_cleanly(s) for s in streams), [
        (s.event_names[-4:], s.unclean_reasons, s.notes) for s in streams
    ]
    _covered([streams[0], streams[-1]], mic.sent)


def _event(body: dict[str, Any]) -> bytes:
    return json.dumps({"event": body}).encode()


def _text_start(content_id: str, role: str, stage: str) -> bytes:
    fields = json.dumps({"generationStage": stage})
    start = {"contentId": content_id, "type": "TEXT", "role": role}
    return _event({"contentStart": {**start, "additionalModelFields": fields}})


async def test_replaced_stream_cannot_change_the_session(bedrock_emulator: Any) -> None:
    """While a replaced stream is still closing, what it says must not move the session's
    turn state nor reach the app: a new turn, a late INTERRUPTED, a user transcript."""
    emu = await bedrock_emulator(scenario=TWO_TURNS)
    session = await _start(nova_config(emu.url, renewal_after_s=0.3, max_session_s=30.0))
    old = session._current
    assert old is not None
    release = asyncio.Event()
    finish = session._finish

    async def held_finish(conn: Connection, final: list[bytes]) -> None:
        await release.wait()  # keep the replaced stream (and its parser) around
        await finish(conn, final)

    session._finish = held_finish  # type: ignore[method-assign]
    events = Events(session)
    mic = Mic(session)
    await mic.silence(0.4)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END)
    for _ in range(30):
        if session.renewals:
            break
        await mic.silence(0.1)
    assert session.renewals == 1 and session._current is not old
    before = (session._last_turn, session._turn_started_at, session.history(), len(events.items))
    for payload in (
        _text_start("late-a", "ASSISTANT", "SPECULATIVE"),
        _event({"textOutput": {"contentId": "late-a", "content": "Nobody heard this."}}),
        _event({"textOutput": {"contentId": "late-a", "content": '{ "interrupted" : true }'}}),
        _event({"contentEnd": {"contentId": "late-a", "stopReason": "INTERRUPTED"}}),
        _text_start("late-u", "USER", "FINAL"),
        _event({"textOutput": {"contentId": "late-u", "content": "Thanks."}}),
        _event({"contentEnd": {"contentId": "late-u", "stopReason": "END_TURN"}}),
    ):
        await session._on_payload(old, payload)
    await mic.silence(0.1)
    after = (session._last_turn, session._turn_started_at, session.history(), len(events.items))
    assert after == before, [e for _, e in events.items[before[3] :]]
    release.set()
    await session.close()
    await settled(emu)
    assert not events.of(EventType.INTERRUPTED)
    assert [e.text for e in events.of(EventType.TRANSCRIPT)] == ["What's the weather?"]


# --------------------------------------------------------------------------- faults

MID_REPLY_FAULTS = [
    ("reset", Faults(reset_on_turn=1), "stream_ended"),
    ("bad_crc", Faults(bad_crc_on_turn=1), "bad_frame"),
    ("truncated", Faults(truncated_frame_on_turn=1), "bad_frame"),
    ("internal", Faults(internal_error_on_turn=1), "service_error"),
    (
        "unavailable",
        Faults(
            internal_error_on_turn=1,
            internal_error_type="serviceUnavailableException",
            internal_error_message="Service is temporarily unavailable.",
        ),
        "service_error",
    ),
]


@pytest.mark.parametrize(
    ("name", "faults", "code"), MID_REPLY_FAULTS, ids=[f[0] for f in MID_REPLY_FAULTS]
)
async def test_mid_reply_fault_recovers(
    bedrock_emulator: Any, name: str, faults: Faults, code: str
) -> None:
    emu = await bedrock_emulator(scenario=TWO_TURNS, faults=faults)
    session = await _start(nova_config(emu.url))
    events = Events(session)
    mic = Mic(session)
    await mic.utterance()
    await events.wait_for(EventType.ERROR)
    [error] = [e.error for e in events.of(EventType.ERROR)]
    assert error is not None and error.recoverable and error.code == code, error
    if name == "internal":
        assert error.message == "System instability detected. Please retry your request."
    await events.wait_for(EventType.TURN_END)  # the cut turn still ends, once
    await mic.silence(0.2)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END, 2)
    await mic.silence(0.1)
    await session.close()
    await settled(emu)
    assert [f for f, _ in emu.faults_fired] == [
        {"reset": "reset", "bad_crc": "bad_crc", "truncated": "truncated_frame"}.get(
            name, "internal_error"
        )
    ]
    streams = emu.accepted_streams
    assert len(streams) == 2 and session.reconnects == 1
    assert closed_cleanly(streams[1])
    assert [t.transcript for t in streams[1].turns] == ["Thanks."]
    # The new stream knows the conversation so far.
    assert ("USER", "What's the weather?") in _history_blocks(streams[1])
    _covered(streams, mic.sent)
    turn_ids = [e.turn_id for e in events.of(EventType.TURN_END)]
    assert len(turn_ids) == len(set(turn_ids)) == 2
    assert len(events.of(EventType.ERROR)) == 1


async def test_connection_limit_reconnects(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(scenario=TWO_TURNS, faults=Faults(connection_limit_s=1.6))
    session = await _start(nova_config(emu.url))  # renewal (6 min) is far away
    events = Events(session)
    mic = Mic(session)
    await mic.silence(1.8)
    await events.wait_for(EventType.ERROR)
    error = events.of(EventType.ERROR)[0].error
    assert error is not None and error.recoverable and error.code == "model_timeout"
    assert "Model has timed out" in error.message
    await mic.utterance()
    await events.wait_for(EventType.TURN_END)
    await session.close()
    await settled(emu)
    streams = emu.accepted_streams
    assert len(streams) == 2
    assert streams[0].exception_types == ["modelTimeoutException"]
    assert_closed_cleanly(streams[1])
    _covered(streams, mic.sent)


async def test_idle_timeout_reconnects(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(scenario=TWO_TURNS, faults=Faults(idle_timeout_s=0.6))
    session = await _start(nova_config(emu.url))
    events = Events(session)
    mic = Mic(session)
    await mic.silence(0.8)
    await events.wait_for(EventType.ERROR)
    error = events.of(EventType.ERROR)[0].error
    assert error is not None and error.recoverable and "531" in error.message
    await mic.utterance(silence_s=0.45)
    await events.wait_for(EventType.TURN_END)
    await session.close()
    await settled(emu)
    assert len(emu.accepted_streams) >= 2
    assert_closed_cleanly(emu.accepted_streams[-1])


async def test_stall_mid_reply_is_survived(bedrock_emulator: Any) -> None:
    """A pause shorter than stall_timeout_s is just a slow reply."""
    emu = await bedrock_emulator(scenario=TWO_TURNS, faults=Faults(stall_on_turn=1, stall_s=0.8))
    session = await _start(nova_config(emu.url, stall_timeout_s=1.5))
    events = Events(session)
    mic = Mic(session)
    feeder = asyncio.create_task(mic.utterance(silence_s=1.6))
    await events.wait_for(EventType.TURN_END)
    await feeder
    await session.close()
    await settled(emu)
    audio = b"".join(e.audio or b"" for e in events.of(EventType.AUDIO_OUTPUT))
    assert len(audio) == 600 * 48
    assert not events.of(EventType.ERROR) and len(emu.accepted_streams) == 1
    assert_closed_cleanly(*emu.accepted_streams)


async def test_stall_past_the_timeout_reconnects(bedrock_emulator: Any) -> None:
    """The service goes quiet mid-reply without closing the stream: after stall_timeout_s
    the session treats the stream as dead and reconnects; silence with no reply due never
    trips the watchdog."""
    emu = await bedrock_emulator(scenario=TWO_TURNS, faults=Faults(stall_on_turn=1, stall_s=2.5))
    session = await _start(nova_config(emu.url, stall_timeout_s=0.5))
    events = Events(session)
    mic = Mic(session)
    feeder = asyncio.create_task(mic.utterance(silence_s=1.2))
    await events.wait_for(EventType.ERROR, within_s=3)
    [error] = [e.error for e in events.of(EventType.ERROR)]
    assert error is not None and error.recoverable and error.code == "stalled", error
    await events.wait_for(EventType.TURN_END)  # the cut reply ends, once
    await feeder
    assert session.reconnects == 1
    await mic.silence(1.0)  # idle on the new stream, longer than the stall timeout
    await mic.utterance()
    await events.wait_for(EventType.TURN_END, 2)
    await mic.silence(0.1)
    await session.close()
    await settled(emu, within_s=8)
    assert session.reconnects == 1 and len(events.of(EventType.ERROR)) == 1
    streams = emu.accepted_streams
    assert len(streams) == 2 and [t.transcript for t in streams[1].turns] == ["Thanks."]
    assert ("USER", "What's the weather?") in _history_blocks(streams[1])
    assert_closed_cleanly(streams[1])
    _covered(streams, mic.sent)


async def test_slow_reads_keep_send_audio_fast(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(scenario=TWO_TURNS, faults=Faults(read_delay_s=0.02))
    session = await _start(nova_config(emu.url))
    events = Events(session)
    mic = Mic(session)
    slowest = 0.0
    original = session.send_audio

    async def timed(pcm: bytes) -> None:
        nonlocal slowest
        started = time.perf_counter()
        await original(pcm)
        slowest = max(slowest, time.perf_counter() - started)

    session.send_audio = timed  # type: ignore[method-assign]
    await mic.utterance()
    await events.wait_for(EventType.TURN_END, within_s=10)
    await session.close()
    await settled(emu)
    assert slowest < 0.005  # send_audio only queues; it never waits on the network
    assert not events.of(EventType.ERROR)
    assert_closed_cleanly(*emu.accepted_streams)


async def test_throttled_start_retries(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(faults=Faults(throttle_first=2))
    session = await _start(nova_config(emu.url))
    await session.close()
    await settled(emu)
    assert [s.http_status for s in emu.streams] == [429, 429, 200]
    assert closed_cleanly(emu.streams[2])


async def test_throttled_start_gives_up(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(faults=Faults(throttle_first=10))
    with pytest.raises(ProviderError) as info:
        await _start(nova_config(emu.url, max_retries=2))
    assert info.value.code == "throttled"
    assert "Too many requests" in info.value.message
    assert len(emu.streams) == 3


async def test_non_retryable_stream_error_ends_cleanly(bedrock_emulator: Any) -> None:
    message = "Invalid input request: the request was malformed."
    emu = await bedrock_emulator(
        scenario=TWO_TURNS,
        faults=Faults(
            internal_error_on_turn=1,
            internal_error_type="validationException",
            internal_error_message=message,
        ),
    )
    session = await _start(nova_config(emu.url))
    events = Events(session)
    mic = Mic(session)
    feeder = asyncio.create_task(mic.utterance(silence_s=2.0))
    await events.wait(lambda: events.ended)
    with pytest.raises(s2s.SessionClosedError):  # the mic learns the session is over
        await feeder
    errors = [e.error for e in events.of(EventType.ERROR)]
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].message == message and not errors[0].recoverable
    assert len(events.of(EventType.TURN_END)) == 1  # the cut reply still ended
    await session.close()  # idempotent
    assert len(emu.accepted_streams) == 1


async def test_retry_budget_exhausted_ends_cleanly(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator()
    session = await _start(nova_config(emu.url, max_retries=2))
    events = Events(session)
    mic = Mic(session)
    await mic.silence(0.2)
    await emu.stop()  # the service goes away for good
    feeder = asyncio.create_task(mic.silence(0.3))
    await events.wait(lambda: events.ended, within_s=10)
    await feeder
    errors = [e.error for e in events.of(EventType.ERROR) if e.error is not None]
    assert errors[0].recoverable and not errors[-1].recoverable
    assert "gave up reconnecting" in errors[-1].message
    await session.close()


@pytest.mark.parametrize("model", [None, "amazon.nova-2-sonic-v1:0"], ids=["v1", "nova2"])
async def test_tool_call_in_flight_is_cancelled_across_reconnect(
    bedrock_emulator: Any, model: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = Scenario(
        turns=(
            Turn(reply_text="Done.", tool_call=ToolCallSpec("get_weather", {"city": "Oslo"})),
            Turn(user_text="Again.", reply_text="Sure."),
            Turn(user_text="Once more.", reply_text="Of course."),
        )
    )
    emu = await bedrock_emulator(scenario=scenario, faults=Faults(connection_limit_s=1.2))
    # A short stall timeout: waiting for the app's tool result is not a stalled stream.
    session = await _start(nova_config(emu.url, model=model, stall_timeout_s=0.3))
    nova2 = session.settings.spec.accepts_text_input
    events = Events(session)
    mic = Mic(session)
    await mic.utterance()
    await events.wait_for(EventType.TOOL_CALL)
    call = events.of(EventType.TOOL_CALL)[0].tool_call
    assert call is not None
    await mic.silence(0.5)
    await events.wait_for(EventType.TOOL_CALL_CANCELLED)
    assert events.of(EventType.TOOL_CALL_CANCELLED)[0].call_ids == (call.id,)
    # The answer arrives late: never a toolResult on the new stream, and used only once.
    # Nova 2 gets it as user text and answers; v1 can't take text, which the log says.
    await session.send_tool_result(ToolResult(call.id, '{"temp_c": 3}'))
    await session.send_tool_result(ToolResult(call.id, '{"temp_c": 3}'))
    if nova2:
        await events.wait_for(EventType.TURN_END, 2)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END, 3 if nova2 else 2)
    await session.close()
    await settled(emu)
    results = [e for s in emu.streams for e in s.events if "toolResult" in e["event"]]
    assert results == []
    streams = emu.accepted_streams
    assert len(streams) == 2 and session.reconnects == 1
    assert_closed_cleanly(streams[1])
    texts = [
        e["event"]["textInput"]["content"] for e in streams[1].events if "textInput" in e["event"]
    ]
    late = 'Result of get_weather: {"temp_c": 3}'
    if nova2:
        assert texts.count(late) == 1
        assert streams[1].turns[0].trigger == "text"  # the model answered the result
    else:
        assert late not in texts
        assert any("can't take it as text" in r.getMessage() for r in caplog.records)
    assert not [e for e in events.of(EventType.ERROR) if e.error and e.error.code == "stalled"]


async def test_ready_standby_takes_over_after_a_failure(bedrock_emulator: Any) -> None:
    scenario = Scenario(
        turns=(
            Turn(user_text="What's the weather?", reply_text="Sunny.", reply_audio_ms=1500),
            Turn(user_text="Thanks.", reply_text="You're welcome.", reply_audio_ms=600),
        ),
        reply_pace=1.5,
    )
    emu = await bedrock_emulator(scenario=scenario, faults=Faults(reset_on_turn=1))
    # Renewal is armed, so a standby opens with the first reply audio; the reset comes
    # halfway through that reply and the standby (no new connect) takes over.
    session = await _start(nova_config(emu.url, renewal_after_s=0.2, max_session_s=30.0))
    events = Events(session)
    mic = Mic(session)
    await mic.silence(0.3)
    await mic.utterance()
    await events.wait_for(EventType.ERROR)
    await mic.silence(0.2)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END, 2)
    await session.close()
    await settled(emu)
    streams = emu.accepted_streams
    assert session.reconnects == 1 and session.renewals == 0
    first_audio = streams[0].turns[0].first_audio_at
    assert first_audio is not None and streams[0].turns[0].end == "RESET"
    # The stream that took over was opened during the reply, before the reset (halfway).
    assert streams[1].started_at < first_audio + 0.5
    assert [t.transcript for t in streams[1].turns] == ["Thanks."]
    assert all(s.audio_frames == 0 for s in streams[2:])  # only a new standby after that
    assert_closed_cleanly(*streams[1:])
    _covered(streams[:2], mic.sent)
