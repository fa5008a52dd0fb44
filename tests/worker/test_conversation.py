"""The conversation against a fake room (real rtc audio sources and streams, scripted
provider): participant choice, microphone wiring, state, transcripts, leave/rejoin, drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from livekit import rtc

from agent.s2s import ConversationContext, ProviderError, Session
from agent.tools import ToolRegistry
from agent.worker.conversation import Conversation
from agent.worker.metadata import JobOptions
from agent.worker.settings import Settings
from tests.support.scripted import ScriptedSession

from .fakes import FakeRoom, Microphone, until

K = rtc.ParticipantKind


class Harness:
    def __init__(self, settings: Settings, options: JobOptions, **session_kw: object) -> None:
        self.room = FakeRoom()
        self.settings = settings
        self.options = options
        self.session_kw = session_kw
        self.sessions: list[ScriptedSession] = []
        self.contexts: list[ConversationContext] = []
        self.drain = asyncio.Event()
        self.conversation = Conversation(
            self.room,
            options,
            settings,
            tools=ToolRegistry(),
            job_id="job-1",
            drained=self._drained,
            start_session=self._start,
        )
        self.task: asyncio.Task[str] | None = None

    async def _drained(self) -> None:
        await self.drain.wait()

    async def _start(
        self, options: JobOptions, tools: ToolRegistry, context: ConversationContext
    ) -> Session:
        session = ScriptedSession(**self.session_kw)  # type: ignore[arg-type]
        self.sessions.append(session)
        self.contexts.append(context)
        return session

    @property
    def session(self) -> ScriptedSession:
        return self.sessions[-1]

    async def started(self) -> ScriptedSession:
        await until(lambda: self.sessions and self.conversation.bridge is not None)
        return self.session


@asynccontextmanager
async def running(h: Harness) -> AsyncIterator[Harness]:
    h.task = asyncio.create_task(h.conversation.run())
    try:
        yield h
    finally:
        if not h.task.done():
            h.room.disconnect()
        await asyncio.wait_for(h.task, 10)
        for speaker in h.room.speakers:
            await speaker.source.aclose()


def options(**kw: object) -> JobOptions:
    return replace(JobOptions(provider="scripted"), **kw)  # type: ignore[arg-type]


async def test_talks_to_the_first_user_and_ignores_other_agents(settings: Settings) -> None:
    h = Harness(settings, options())
    mic = Microphone()
    async with running(h):
        h.room.join("other-agent", kind=K.PARTICIPANT_KIND_AGENT, mic=Microphone())
        await asyncio.sleep(0.05)
        assert h.sessions == []  # an agent is nobody to talk to
        h.room.join("alice", mic=mic)
        session = await h.started()
        await mic.speak(200)
        await session.wait_for(lambda s: s.frames_in >= 5)
        assert h.conversation.participant == "alice"
        assert "other-agent" not in h.room.mic_requests
        ctx = h.contexts[0]
        assert (ctx.session_id, ctx.conversation_id, ctx.user_id) == ("job-1", "room-1", "alice")
    assert h.task is not None and h.task.result() == "room disconnected"
    assert session.closed
    await mic.aclose()


async def test_microphone_frames_reach_the_session_at_its_rate(settings: Settings) -> None:
    h = Harness(settings, options())
    mic = Microphone(sample_rate=48000)
    h.room.join("alice", mic=mic)
    async with running(h):
        session = await h.started()
        await mic.speak(400)
        await session.wait_for(lambda s: s.frames_in >= 10)
        # 16 kHz mono, 20 ms frames: resampled on the SDK side, re-framed by the bridge.
        assert {len(f) for f in session.audio_in} == {640}
    await mic.aclose()


async def test_named_participant_is_waited_for(settings: Settings) -> None:
    h = Harness(settings, options(participant_identity="bob"))
    h.room.join("alice", mic=Microphone())
    async with running(h):
        await asyncio.sleep(0.05)
        assert h.sessions == []
        h.room.join("bob", mic=Microphone())
        await h.started()
        assert h.conversation.participant == "bob"


async def test_agent_audio_track_is_published_at_the_output_rate(settings: Settings) -> None:
    h = Harness(settings, options(), output_rate=24000)
    h.room.join("alice", mic=Microphone())
    async with running(h):
        await h.started()
        (speaker,) = h.room.speakers
        assert speaker.source.sample_rate == 24000
        assert speaker.source.num_channels == 1


async def test_state_goes_through_a_turn(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice", mic=Microphone())
    async with running(h):
        session = await h.started()
        await until(lambda: h.room.states()[-1:] == ["listening"])
        await session.transcript("hello", final=True, turn_id="u1")
        await until(lambda: h.room.states()[-1:] == ["thinking"])
        await session.reply(300, "t1", text="Hi there, how can I help?")
        await until(lambda: "speaking" in h.room.states())
        await until(lambda: h.room.states()[-1:] == ["listening"], timeout=3)
    assert h.room.states()[:4] == ["initializing", "listening", "thinking", "speaking"]


async def test_transcripts_reach_the_room_in_step_with_playout(settings: Settings) -> None:
    h = Harness(settings, options())
    mic = Microphone()
    h.room.join("alice", mic=mic)
    async with running(h):
        session = await h.started()
        await until(lambda: h.conversation.bridge and h.room.mic_requests)
        await session.transcript("what time is it", final=True, turn_id="u1")
        words = "It is ten past nine in the morning here right now"
        # 1 s of reply audio at once, the full text first: words must follow the audio.
        await session.text(words, "t1", final=True)
        await session.reply(1000, "t1", text=None)
        await until(lambda: h.room.streams.by("agent-job1"))
        agent_stream = h.room.streams.by("agent-job1")[0]
        await asyncio.sleep(0.35)
        early = agent_stream.text
        assert 0 < len(early.split()) < len(words.split())  # part way through playout
        await until(lambda: agent_stream.closed, timeout=3)
    assert agent_stream.text == words
    assert agent_stream.final_attributes["lk.transcription_final"] == "true"
    assert agent_stream.attributes["lk.transcribed_track_id"] == "TR_agent"
    (user_stream,) = h.room.streams.by("alice")
    assert user_stream.text == "what time is it"
    assert user_stream.attributes["lk.transcription_final"] == "true"
    assert user_stream.attributes["lk.transcribed_track_id"].startswith("TR_mic")
    await mic.aclose()


async def test_interrupted_reply_transcript_is_truncated(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice", mic=Microphone())
    async with running(h):
        session = await h.started()
        words = " ".join(f"w{i}" for i in range(20))
        await session.text(words, "t1", final=True)
        await session.reply(2000, "t1", text=None, end=False)
        await until(lambda: h.room.streams.by("agent-job1"))
        await asyncio.sleep(0.4)
        await session.interrupted("t1")
        await until(lambda: h.room.streams.by("agent-job1")[0].closed, timeout=3)
        stream = h.room.streams.by("agent-job1")[0]
        heard = stream.text.split()
        assert 2 <= len(heard) <= 10, stream.text  # ~0.4-0.6 s of 2 s: about a quarter
        assert words.startswith(stream.text.strip())
        assert stream.final_attributes["lk.transcription_final"] == "true"
        assert session.interrupts and 300 <= session.interrupts[0] <= 900  # type: ignore[operator]


async def test_leave_and_rejoin_within_grace_resumes(settings: Settings) -> None:
    h = Harness(replace(settings, participant_grace_s=2.0), options())
    first = Microphone()
    h.room.join("alice", mic=first)
    async with running(h):
        session = await h.started()
        await first.speak(200)
        await session.wait_for(lambda s: s.frames_in >= 5)
        h.room.leave("alice")
        await asyncio.sleep(0.2)
        before = session.frames_in
        second = Microphone()
        h.room.join("alice", mic=second)
        await second.speak(300)
        await session.wait_for(lambda s: s.frames_in >= before + 5)
        assert len(h.sessions) == 1  # the same session carried on
        assert not h.task.done()  # type: ignore[union-attr]
    await first.aclose()
    await second.aclose()


async def test_leaving_ends_the_conversation_after_the_grace_period(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(replace(settings, participant_grace_s=0.3), options())
    h.room.join("alice", mic=Microphone())
    caplog.set_level(logging.INFO, logger="agent.worker.conversation")
    async with running(h):
        session = await h.started()
        loop = asyncio.get_running_loop()
        left_at = loop.time()
        h.room.leave("alice")
        reason = await asyncio.wait_for(h.task, 3)  # type: ignore[arg-type]
        assert reason == "participant left"
        assert 0.25 <= loop.time() - left_at < 1.5
    assert session.closed
    assert "participant 'alice' left; ending in 0.3 s unless they rejoin" in caplog.text


async def test_mic_published_later_is_picked_up(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice")  # joined without a microphone
    async with running(h):
        session = await h.started()
        mic = Microphone()
        h.room.publish_mic("alice", mic)
        await mic.speak(200)
        await session.wait_for(lambda s: s.frames_in >= 5)
    await mic.aclose()


async def test_drain_lets_the_current_reply_finish(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice", mic=Microphone())
    async with running(h):
        session = await h.started()
        await session.reply(600, "t1", text="a long answer")
        await until(lambda: h.room.states()[-1:] == ["speaking"])
        loop = asyncio.get_running_loop()
        drained_at = loop.time()
        h.drain.set()
        reason = await asyncio.wait_for(h.task, 5)  # type: ignore[arg-type]
        waited = loop.time() - drained_at
    assert reason == "worker draining"
    assert 0.3 <= waited < 3.0  # it waited for the reply to play, not for the timeout
    assert h.room.states()[-1] == "listening"
    assert h.room.streams.by("agent-job1")[0].text == "a long answer"
    assert session.closed


async def test_drain_while_listening_ends_at_once(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice", mic=Microphone())
    async with running(h):
        await h.started()
        h.drain.set()
        assert await asyncio.wait_for(h.task, 1) == "worker draining"  # type: ignore[arg-type]


async def test_drain_before_anyone_joins(settings: Settings) -> None:
    h = Harness(settings, options())
    async with running(h):
        await asyncio.sleep(0.05)
        h.drain.set()
        assert await asyncio.wait_for(h.task, 1) == "worker draining"  # type: ignore[arg-type]
    assert h.sessions == []


async def test_greeting_is_sent_as_text(settings: Settings) -> None:
    h = Harness(settings, options(greeting="Greet the user warmly."))
    h.room.join("alice", mic=Microphone())
    async with running(h):
        session = await h.started()
        await session.wait_for(lambda s: s.texts == ["Greet the user warmly."])


async def test_greeting_skipped_when_provider_takes_no_text(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    class NoText(ScriptedSession):
        async def send_text(self, text: str) -> None:
            raise NotImplementedError("text input is not supported")

    h = Harness(settings, options(greeting="Say hi."))

    async def start(*_: object) -> Session:
        session = NoText()
        h.sessions.append(session)
        return session

    h.conversation._start_session = start  # type: ignore[assignment]
    h.room.join("alice", mic=Microphone())
    async with running(h):
        await h.started()
        await until(lambda: "greeting skipped" in caplog.text)
        assert not h.task.done()  # type: ignore[union-attr]
    assert "provider scripted can't take text input" in caplog.text


async def test_session_start_failure_ends_with_a_reason(settings: Settings) -> None:
    h = Harness(settings, options())

    async def failing(*_: object) -> Session:
        raise ProviderError("AccessDeniedException: not authorized", code="auth")

    h.conversation._start_session = failing  # type: ignore[assignment]
    h.room.join("alice", mic=Microphone())
    async with running(h):
        reason = await asyncio.wait_for(h.task, 3)  # type: ignore[arg-type]
    assert reason.startswith("provider session failed")
    assert "not authorized" in reason


async def test_session_end_ends_the_conversation(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice", mic=Microphone())
    async with running(h):
        session = await h.started()
        await session.close()  # the provider went away for good
        assert await asyncio.wait_for(h.task, 3) == "session ended"  # type: ignore[arg-type]


async def test_close_is_idempotent_and_leaves_no_tasks(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice", mic=Microphone())
    before: Callable[[], set[asyncio.Task[object]]] = asyncio.all_tasks
    async with running(h):
        await h.started()
    await h.conversation.close()
    await asyncio.sleep(0.05)
    leftover = [t for t in before() if t is not asyncio.current_task() and not t.done()]
    names = [
        t.get_name() for t in leftover if "conversation" in t.get_name() or "bridge" in t.get_name()
    ]
    assert names == []


async def test_nova_style_barge_in_keeps_one_truncated_segment(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice", mic=Microphone())
    async with running(h):
        session = await h.started()
        words = "Let me tell you all about the weather in Paris day by day for a week"
        await session.text(words, "t1", final=False)  # SPECULATIVE, before the audio
        await session.reply(3000, "t1", text=None, end=False)
        await until(lambda: h.room.streams.by("agent-job1"))
        await asyncio.sleep(0.3)
        await session.interrupted("t1")
        await session.text(words, "t1", final=True)  # FINAL, after the barge-in
        await session.end_turn("t1")
        await until(lambda: h.room.states()[-1:] == ["listening"])
        await session.reply(200, "t2", text="Why did the chicken cross the road?")
        await until(lambda: len(h.room.streams.by("agent-job1")) == 2)
        await until(lambda: h.room.streams.by("agent-job1")[1].closed, timeout=3)
    first, second = h.room.streams.by("agent-job1")
    assert first.closed and first.text.strip() != words
    assert words.startswith(first.text.strip())
    assert second.text == "Why did the chicken cross the road?"


async def test_shutdown_callback_lets_the_reply_finish_then_closes(settings: Settings) -> None:
    h = Harness(settings, options())
    h.room.join("alice", mic=Microphone())
    async with running(h):
        session = await h.started()
        await session.reply(500, "t1", text="almost done")
        await until(lambda: h.room.states()[-1:] == ["speaking"])
        loop = asyncio.get_running_loop()
        begun = loop.time()
        # The job's shutdown callback and run()'s own clean-up may overlap: both return
        # only once everything is closed.
        await asyncio.wait_for(h.conversation.close(finish_turn=True), 5)
        waited = loop.time() - begun
        await asyncio.wait_for(h.task, 2)  # type: ignore[arg-type]
    assert 0.2 <= waited < 3.0
    assert session.closed
    assert h.room.streams.by("agent-job1")[0].text == "almost done"
