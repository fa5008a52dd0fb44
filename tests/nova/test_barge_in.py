"""Barge-in: one INTERRUPTED per reply, the history keeps only what was heard, and the
renewal that follows carries that truncated history."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agent.s2s as s2s
from agent.audio.sink import MemorySink
from agent.bridge import Bridge
from agent.s2s import EventType, HistoryMessage
from plugins.nova import NovaSession
from tests.emulators.bedrock import Scenario, Turn

from .conftest import Events, Mic, assert_closed_cleanly, nova_config, settled, tone

pytestmark = pytest.mark.timeout(30)

LONG_REPLY = "One two three four five six seven eight nine ten eleven twelve."
SCENARIO = Scenario(
    turns=(
        Turn(user_text="Count for me.", reply_text=LONG_REPLY, reply_audio_ms=3000),
        Turn(user_text="Stop, that's enough.", reply_text="Okay.", reply_audio_ms=400),
    )
)


def _history_blocks(record: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    role = ""
    for event in record.events:
        body = event["event"]
        if "contentStart" in body:
            if body["contentStart"]["type"] == "AUDIO":
                break
            role = body["contentStart"]["role"]
        elif "textInput" in body:
            out.append((role, body["textInput"]["content"]))
    return out


async def test_barge_in_truncates_history_and_renewal_carries_it(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO)
    # Renewal is armed from the start: it must wait past the barge-in and the next reply.
    session = await s2s.new("nova", nova_config(emu.url, renewal_after_s=0.3)).start()
    assert isinstance(session, NovaSession)
    events = Events(session)
    mic = Mic(session)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END)  # all 3 s of reply audio arrived (4x speed)
    first_turn = events.of(EventType.TURN_END)[0].turn_id
    await mic.silence(0.2)
    # The user talks over the reply while it is still playing.
    await mic.play(tone(320))
    await events.wait_for(EventType.INTERRUPTED)
    interrupted = events.of(EventType.INTERRUPTED)
    assert [e.turn_id for e in interrupted] == [first_turn]
    assert session.renewals == 0  # no handover while the reply plays or the user speaks
    await session.interrupt(played_ms=750)  # what the bridge measured: a quarter was heard
    await mic.silence(0.5)
    await events.wait_for(EventType.TURN_END, 2)
    for _ in range(30):  # then renew once "Okay." has been heard
        if session.renewals:
            break
        await mic.silence(0.1)
    await session.close()
    await settled(emu)

    heard = "One two three"
    assert session.history() == [
        HistoryMessage("user", "Count for me."),
        HistoryMessage("assistant", heard),
        HistoryMessage("user", "Stop, that's enough."),
        HistoryMessage("assistant", "Okay."),
    ]
    assert len(events.of(EventType.INTERRUPTED)) == 1
    assert len(events.of(EventType.TURN_END)) == 2
    # The marker never shows up as text.
    assert all("interrupted" not in (e.text or "") for e in events.of(EventType.TEXT_OUTPUT))
    streams = emu.accepted_streams
    assert session.renewals == 1 and len(streams) == 2
    assert_closed_cleanly(*streams)
    assert streams[0].turns[0].interrupted
    assert _history_blocks(streams[1])[1:] == [
        ("USER", "Count for me."),
        ("ASSISTANT", heard),
        ("USER", "Stop, that's enough."),
        ("ASSISTANT", "Okay."),
    ]


async def test_interrupt_with_nothing_heard_drops_the_reply(bedrock_emulator: Any) -> None:
    emu = await bedrock_emulator(scenario=SCENARIO)
    session = await s2s.new("nova", nova_config(emu.url)).start()
    assert isinstance(session, NovaSession)
    events = Events(session)
    mic = Mic(session)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END)
    await session.interrupt(played_ms=0)
    await session.interrupt()  # no measurement: nothing changes
    await session.close()
    await settled(emu)
    assert session.history() == [HistoryMessage("user", "Count for me.")]
    [record] = emu.accepted_streams
    assert_closed_cleanly(record)


async def test_bridge_clears_sink_within_a_frame(bedrock_emulator: Any) -> None:
    """Through agent.bridge: the sink is cleared as soon as INTERRUPTED arrives, and the
    bridge's played_ms reaches the session's history."""
    from livekit import rtc

    emu = await bedrock_emulator(scenario=SCENARIO)
    session = await s2s.new("nova", nova_config(emu.url)).start()
    assert isinstance(session, NovaSession)
    sink = MemorySink(24000, clock="realtime", queue_ms=200.0)
    clear_delay: list[float] = []

    class Watched:
        """The session, with INTERRUPTED timed from its delivery to the sink's clear."""

        def __getattr__(self, name: str) -> Any:
            return getattr(session, name)

        async def _events(self) -> Any:
            loop = asyncio.get_running_loop()
            async for event in session.events():
                if event.type is EventType.INTERRUPTED:
                    before = sink.clear_count
                    delivered = loop.time()
                    yield event
                    # The bridge asks for the next event only after handling this one.
                    assert sink.clear_count == before + 1
                    clear_delay.append(loop.time() - delivered)
                    assert sink.queued_ms == 0
                else:
                    yield event

        def events(self) -> Any:
            return self._events()

    frames: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def source() -> Any:
        while (pcm := await frames.get()) is not None:
            yield rtc.AudioFrame(pcm, 16000, 1, len(pcm) // 2)

    bridge = Bridge(Watched(), sink, source=source())  # type: ignore[arg-type]
    runner = asyncio.create_task(bridge.run())

    class BridgeMic(Mic):
        async def play(self, pcm: bytes, *, realtime: bool = True) -> None:
            pcm = pcm + b"\x00" * (-len(pcm) % 1024)
            for i in range(0, len(pcm), 1024):
                await asyncio.sleep(0.032)
                frames.put_nowait(pcm[i : i + 1024])
                self.sent += 1

    mic = BridgeMic(session)
    await mic.utterance()
    await mic.silence(1.0)  # the reply plays in real time through the sink
    await mic.play(tone(320))  # barge in about 1 s into the 3 s reply
    await mic.silence(0.6)
    frames.put_nowait(None)
    await bridge.close()
    await runner
    await settled(emu)

    assert len(clear_delay) == 1 and clear_delay[0] < 0.032  # within one 32 ms frame
    [record] = emu.accepted_streams
    assert_closed_cleanly(record)
    assert sink.clear_count >= 1 and sink.cleared_bytes > 0
    history = session.history()
    assert history[0] == HistoryMessage("user", "Count for me.")
    # The reply was cut where the bridge says playback stopped: some words, not all.
    heard = history[1].text
    assert history[1].role == "assistant" and heard and heard != LONG_REPLY
    assert LONG_REPLY.startswith(heard)


# ----------------------------------------------------------- barge-in while Nova generates

COUNT_THEN_STOP = (
    Turn(user_text="Count for me.", reply_text=LONG_REPLY, reply_audio_ms=4000),
    Turn(user_text="Stop.", reply_text="Okay.", reply_audio_ms=400),
)


async def _barge_in_mid_generation(
    emu: Any, *, played_ms: int | None
) -> tuple[NovaSession, list[int], list[float]]:
    """Renewal armed; the user talks over a reply Nova is still sending. The consumer
    answers INTERRUPTED with interrupt(played_ms) at once (as the bridge does), or never."""
    session = await s2s.new("nova", nova_config(emu.url, renewal_after_s=0.3)).start()
    assert isinstance(session, NovaSession)
    renewals_at_interrupt: list[int] = []
    interrupted_at: list[float] = []

    async def consume() -> None:
        async for event in session.events():
            if event.type is EventType.INTERRUPTED:
                interrupted_at.append(asyncio.get_running_loop().time())
                renewals_at_interrupt.append(session.renewals)
                if played_ms is not None:
                    await session.interrupt(played_ms=played_ms)

    consumer = asyncio.create_task(consume())
    mic = Mic(session)
    await mic.utterance()
    await mic.silence(0.5)
    await mic.play(tone(400))  # barge in while the reply's audio is still being sent
    await mic.silence(1.6)
    await session.close()
    await consumer
    await settled(emu)
    return session, renewals_at_interrupt, interrupted_at


async def test_barge_in_mid_generation_renews_with_the_apps_cut(bedrock_emulator: Any) -> None:
    """INTERRUPTED and TURN_END come together; the renewal that follows must wait for
    interrupt(played_ms) and carry only what was heard, not the whole generated reply."""
    emu = await bedrock_emulator(scenario=Scenario(turns=COUNT_THEN_STOP, reply_pace=1.0))
    session, renewals_at_interrupt, _ = await _barge_in_mid_generation(emu, played_ms=500)
    assert renewals_at_interrupt == [0]
    streams = emu.accepted_streams
    # Renewal stays armed (0.3 s), so the reply to the barge-in may renew once more.
    assert session.renewals >= 1 and len(streams) == session.renewals + 1
    assert_closed_cleanly(*streams)
    assert streams[0].turns[0].interrupted
    heard = session.history()[1]
    assert heard.role == "assistant" and heard.text and heard.text != LONG_REPLY
    assert LONG_REPLY.startswith(heard.text)
    # The new stream got the app's measurement (500 ms), not the whole reply.
    assert _history_blocks(streams[1])[1:3] == [
        ("USER", "Count for me."),
        ("ASSISTANT", heard.text),
    ]


async def test_barge_in_without_interrupt_call_still_cuts_the_reply(
    bedrock_emulator: Any,
) -> None:
    """The app never calls interrupt(): the renewal goes ahead after a short wait, with the
    reply cut where the session's own playout estimate says playback stopped."""
    # Audio arrives at twice real time, as Nova sends it: more arrives than is heard.
    emu = await bedrock_emulator(scenario=Scenario(turns=COUNT_THEN_STOP, reply_pace=2.0))
    session, _, interrupted_at = await _barge_in_mid_generation(emu, played_ms=None)
    assert len(interrupted_at) == 1
    streams = emu.accepted_streams
    # Renewal stays armed (0.3 s), so the reply to the barge-in may renew once more.
    assert session.renewals >= 1 and len(streams) == session.renewals + 1
    assert_closed_cleanly(*streams)
    assistant = [text for role, text in _history_blocks(streams[1]) if role == "ASSISTANT"]
    assert assistant and assistant[0] and assistant[0] != LONG_REPLY
    assert LONG_REPLY.startswith(assistant[0])


async def test_interrupt_cuts_the_interrupted_turn_not_the_newest(bedrock_emulator: Any) -> None:
    """interrupt(played_ms) arrives after Nova already started the next reply: it applies
    to the turn INTERRUPTED named."""
    emu = await bedrock_emulator(scenario=SCENARIO)
    session = await s2s.new("nova", nova_config(emu.url)).start()
    assert isinstance(session, NovaSession)
    events = Events(session)
    mic = Mic(session)
    await mic.utterance()
    await events.wait_for(EventType.TURN_END)
    first_turn = events.of(EventType.TURN_END)[0].turn_id
    await mic.silence(0.2)
    await mic.play(tone(320))
    await events.wait_for(EventType.INTERRUPTED)
    await mic.silence(0.5)
    await events.wait_for(EventType.TURN_END, 2)  # "Okay." is the newest turn now
    assert events.of(EventType.TURN_END)[1].turn_id != first_turn
    await session.interrupt(played_ms=250)  # a twelfth of the 3 s reply was heard
    await session.close()
    await settled(emu)
    assert session.history() == [
        HistoryMessage("user", "Count for me."),
        HistoryMessage("assistant", "One"),
        HistoryMessage("user", "Stop, that's enough."),
        HistoryMessage("assistant", "Okay."),
    ]
