"""The worker end to end: the real `python -m agent dev` worker dispatched by the LiveKit test
server, a real rtc SDK caller, and the provider's emulator (per provider, see providers.py).

Audio checks are tolerant by design: energy over time and the dominant frequency of the
emulator's reply tone, plus transcripts. Runs inside the private network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from .audio import Recording, read_wav
from .caller import SAMPLE_RATE, TRACK_ATTR, Caller, Segment, token
from .conftest import AGENT_NAME
from .e2e_tools import ORDER_CODE
from .harness import ROOT, LkServer, Proc
from .providers import ProviderHarness, ProviderRun, ScriptTurn, describe

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(50)]

FIXTURES = ROOT / "tests" / "fixtures"
LOUD_DBFS = -35.0
FREQ_TOLERANCE = 0.03
FALLBACK = ScriptTurn(reply_text="I heard you.", tone_hz=300.0, reply_audio_ms=800)
# Upper bound for "the caller's audio went quiet after the provider's interrupt"; the
# measured value is reported (metrics) and is expected to be far below this.
BARGE_IN_QUIET_LIMIT_S = 0.6


def speech(name: str) -> Any:
    return read_wav(FIXTURES / f"{name}.wav", SAMPLE_RATE)


@contextlib.asynccontextmanager
async def scripted(
    provider: ProviderHarness,
    server: LkServer,
    turns: list[ScriptTurn],
    fallback: ScriptTurn = FALLBACK,
) -> AsyncIterator[tuple[ProviderRun, list[Caller]]]:
    """The provider scripted with `turns`, and the test's callers. On exit the callers leave
    and their rooms' jobs end before the emulator stops, so no session of this test lives on
    (reconnecting) into the next one."""
    callers: list[Caller] = []
    async with provider.run(turns, fallback) as run:
        failed = True
        try:
            yield run, callers
            failed = False
        finally:
            rooms = {c.room.name for c in callers}
            await asyncio.gather(*(c.close() for c in callers))
            try:
                await server.wait_state(
                    lambda s: all(
                        j["status"] not in ("JS_PENDING", "JS_RUNNING")
                        for r in rooms
                        for j in LkServer.jobs(s, r)
                    ),
                    15,
                    "the test's jobs to end after its callers left",
                )
            except AssertionError:
                if not failed:
                    raise


async def join(
    callers: list[Caller],
    server: LkServer,
    room: str,
    *,
    identity: str = "caller",
    metadata: str | None = "",
) -> Caller:
    """A caller in `room` with a microphone; metadata=None asks for no agent in the token."""
    agents = None if metadata is None else [(AGENT_NAME, metadata)]
    caller = Caller(server.url, token(identity, room, agents=agents))
    callers.append(caller)
    await caller.connect()
    await caller.publish_microphone()
    return caller


async def agent_ready(caller: Caller, limit_s: float = 30.0) -> tuple[str, Recording]:
    """Wait for the agent's audio track and its first `listening` state."""
    recording: Recording = await caller.wait_for(
        lambda: next(iter(caller.recordings.values()), None), limit_s, "the agent's audio track"
    )
    (agent,) = caller.agents()
    await caller.wait_for(
        lambda: "listening" in caller.agent_states(agent.identity), 10, "agent state listening"
    )
    return agent.identity, recording


def assert_tone(heard_hz: float, expected_hz: float) -> None:
    assert abs(heard_hz - expected_hz) <= expected_hz * FREQ_TOLERANCE, (
        f"dominant frequency {heard_hz:.1f} Hz, expected {expected_hz} Hz"
    )


def final_segments(caller: Caller, sender: str) -> list[Segment]:
    return [s for s in caller.segments if s.sender == sender and s.done and s.final]


def has_final_text(caller: Caller, sender: str, text: str) -> bool:
    return any(text in s.text for s in final_segments(caller, sender))


async def wait_reply(
    caller: Caller, recording: Recording, after: float, seconds: float, limit_s: float = 15.0
) -> float:
    """Wait until `seconds` of loud reply audio arrived after `after`; returns its start."""
    await caller.wait_for(
        lambda: recording.loud_seconds(LOUD_DBFS, after, time.monotonic()) >= seconds,
        limit_s,
        f"{seconds} s of reply audio",
    )
    first = recording.first_loud(LOUD_DBFS, after)
    assert first is not None
    return first


# -- 1. a conversation ------------------------------------------------------------------------


async def test_caller_speaks_and_hears_the_agent(
    lkserver: LkServer,
    agent_worker: Proc,
    provider: ProviderHarness,
    metrics: dict[str, Any],
) -> None:
    reply = ScriptTurn(
        reply_text="It is sunny in Paris today.",
        tone_hz=440.0,
        reply_audio_ms=1500,
        user_text="What is the weather in Paris?",
    )
    async with scripted(provider, lkserver, [reply], FALLBACK) as (run, callers):
        joined = time.monotonic()
        caller = await join(callers, lkserver, "s-talk")
        agent, recording = await agent_ready(caller)
        metrics[f"{provider.name}.agent_ready_s"] = round(time.monotonic() - joined, 2)

        said = caller.say(speech("weather_paris"))
        await said.finished.wait()
        first = await wait_reply(caller, recording, said.started_at, 1.2)
        end = time.monotonic()
        assert_tone(recording.dominant_frequency(said.started_at, end), reply.tone_hz)
        metrics[f"{provider.name}.end_of_speech_to_reply_heard_s"] = round(
            first - said.finished_at, 3
        )
        replies = run.observe().replies_started
        assert replies, describe(run.observe())
        metrics[f"{provider.name}.reply_sent_to_heard_s"] = round(first - replies[0], 3)

        # Transcripts of both sides, on the tracks they describe.
        await caller.wait_for(
            lambda: final_segments(caller, agent) and final_segments(caller, caller.identity),
            10,
            "final transcripts of both sides",
        )
        mic_sid = next(iter(caller.room.local_participant.track_publications))
        (user_segment,) = final_segments(caller, caller.identity)
        assert user_segment.text.strip() == reply.user_text
        assert user_segment.attributes.get(TRACK_ATTR) == mic_sid
        (agent_segment,) = final_segments(caller, agent)
        assert agent_segment.text.strip() == reply.reply_text
        agent_track = next(iter(caller.room.remote_participants[agent].track_publications), None)
        assert agent_segment.attributes.get(TRACK_ATTR) == agent_track

        # lk.agent.state: listening → (thinking →) speaking → listening.
        await caller.wait_for(
            lambda: caller.agent_states(agent)[-1:] == ["listening"], 10, "back to listening"
        )
        states = caller.agent_states(agent)
        assert "speaking" in states, states
        spoke = states.index("speaking")
        assert "listening" in states[:spoke] and "listening" in states[spoke:], states
        assert set(states) <= {"initializing", "listening", "thinking", "speaking"}, states


# -- 2. barge-in --------------------------------------------------------------------------------


async def test_barge_in_silences_the_reply_and_the_new_question_is_answered(
    lkserver: LkServer,
    agent_worker: Proc,
    provider: ProviderHarness,
    metrics: dict[str, Any],
) -> None:
    long_reply = ScriptTurn(
        reply_text="Let me tell you all about the weather in Paris, day by day, for a week.",
        tone_hz=440.0,
        reply_audio_ms=8000,
        user_text="What is the weather in Paris?",
    )
    answer = ScriptTurn(
        reply_text="Why did the chicken cross the road?",
        tone_hz=660.0,
        reply_audio_ms=1200,
        user_text="Stop, tell me a joke instead.",
    )
    async with scripted(provider, lkserver, [long_reply, answer], FALLBACK) as (run, callers):
        caller = await join(callers, lkserver, "s-barge")
        agent, recording = await agent_ready(caller)
        said = caller.say(speech("weather_paris"))
        await said.finished.wait()
        first = await wait_reply(caller, recording, said.started_at, 1.0)

        barge = caller.say(speech("stop_joke"))  # talk over the 8 s reply
        await barge.started.wait()
        interrupts = await caller.wait_for(
            lambda: run.observe().interrupts, 10, "the provider's interrupt"
        )
        interrupted_at = interrupts[0]
        quiet_at = await caller.wait_for(
            lambda: recording.quiet_since(LOUD_DBFS, interrupted_at - 0.05, 0.3),
            5,
            "the reply to go quiet",
        )
        quiet_s = quiet_at - interrupted_at
        heard_s = recording.loud_seconds(LOUD_DBFS, first, quiet_at)
        sent = run.observe().replies_started
        metrics[f"{provider.name}.barge_in_quiet_after_provider_interrupt_s"] = round(quiet_s, 3)
        metrics[f"{provider.name}.barge_in_speech_start_to_quiet_s"] = round(
            quiet_at - barge.started_at, 3
        )
        transport_s = first - sent[0]  # provider sends reply audio → caller hears it
        metrics[f"{provider.name}.barge_in_reply_sent_to_heard_s"] = round(transport_s, 3)
        # What the interrupt costs beyond transport: ideally about one audio frame.
        metrics[f"{provider.name}.barge_in_quiet_minus_transport_s"] = round(
            quiet_s - transport_s, 3
        )
        assert quiet_s < BARGE_IN_QUIET_LIMIT_S, f"reply went quiet {quiet_s:.3f} s after interrupt"
        assert heard_s < 6.0, f"{heard_s:.1f} s of the 8 s reply was heard: not cut off"

        # The new question gets its answer (the second scripted reply's tone and text).
        await barge.finished.wait()
        second = await wait_reply(caller, recording, barge.finished_at, 0.8)
        assert_tone(recording.dominant_frequency(second, time.monotonic()), answer.tone_hz)
        await caller.wait_for(
            lambda: any(answer.reply_text in s.text for s in final_segments(caller, agent)),
            10,
            "the answer's transcript",
        )
        # The interrupted reply's transcript holds only the words heard, never the whole text.
        agent_texts = [s.text.strip() for s in final_segments(caller, agent)]
        assert long_reply.reply_text not in agent_texts, agent_texts


# -- 3. a tool call ------------------------------------------------------------------------------


async def test_tool_call_result_reaches_the_spoken_answer(
    lkserver: LkServer,
    agent_worker: Proc,
    provider: ProviderHarness,
    tool_log: Path,
) -> None:
    turn = ScriptTurn(
        reply_text="Your order is on its way: {tool_result}",
        tone_hz=520.0,
        reply_audio_ms=1200,
        user_text="Where is my order A-17?",
        tool=("lookup_order", {"order_id": "A-17"}),
    )
    async with scripted(provider, lkserver, [turn], FALLBACK) as (run, callers):
        caller = await join(callers, lkserver, "s-tool")
        agent, recording = await agent_ready(caller)
        said = caller.say(speech("weather_paris"))
        await said.finished.wait()
        start = await wait_reply(caller, recording, said.started_at, 1.0)
        assert_tone(recording.dominant_frequency(start, time.monotonic()), turn.tone_hz)
        segments = await caller.wait_for(
            lambda: [s for s in final_segments(caller, agent) if ORDER_CODE in s.text],
            10,
            "the agent transcript with the tool result",
        )
        assert segments[0].text.startswith("Your order is on its way:")
        results = run.observe().tool_results
        assert len(results) == 1 and json.loads(results[0])["tracking"] == ORDER_CODE
    text = await asyncio.to_thread(tool_log.read_text, encoding="utf-8")
    calls = [json.loads(line) for line in text.splitlines()]
    assert [c["order_id"] for c in calls if c["order_id"] == "A-17"] == ["A-17"]
    assert calls[-1]["pid"] != agent_worker.popen.pid  # ran in the job process


# -- 4. explicit dispatch with metadata; bad metadata ---------------------------------------------


async def test_dispatch_metadata_chooses_voice_and_bad_metadata_fails_alone(
    lkserver: LkServer,
    agent_worker: Proc,
    provider: ProviderHarness,
) -> None:
    instructions = "You are a terse pirate. e2e-marker-7"
    turn = ScriptTurn(reply_text="Arr, hello.", tone_hz=350.0, reply_audio_ms=900)
    async with scripted(provider, lkserver, [turn], FALLBACK) as (run, callers):
        # Bad metadata through the token's room config: the worker refuses that job.
        bad = await join(callers, lkserver, "s-bad-meta", identity="bad", metadata="{not json")
        state = await lkserver.wait_state(
            lambda s: (
                LkServer.jobs(s, "s-bad-meta")
                and LkServer.jobs(s, "s-bad-meta")[0]["status"] != "JS_PENDING"
            ),
            15,
            "the bad job to end",
        )
        (bad_job,) = LkServer.jobs(state, "s-bad-meta")
        assert bad_job["status"] == "JS_FAILED", bad_job

        # Good metadata through the dispatch API, into another room.
        metadata = json.dumps({"voice": provider.voice, "instructions": instructions})
        async with api.LiveKitAPI(lkserver.url, lkserver.api_key, lkserver.api_secret) as lk:
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=AGENT_NAME, room="s-meta", metadata=metadata
                )
            )
        caller = await join(callers, lkserver, "s-meta", metadata=None)
        _agent, recording = await agent_ready(caller)
        said = caller.say(speech("thank_you"))
        await said.finished.wait()
        start = await wait_reply(caller, recording, said.started_at, 0.7)
        assert_tone(recording.dominant_frequency(start, time.monotonic()), turn.tone_hz)
        (session,) = run.observe().sessions
        assert session.voice == provider.voice
        assert instructions in session.instructions

        # The refused room never got an agent; the worker is still healthy.
        assert bad.agents() == []
        state = await lkserver.state()
        assert any(w["agent_name"] == AGENT_NAME and w["connected"] for w in state["workers"])
        (job,) = LkServer.jobs(state, "s-meta")
        assert job["status"] == "JS_RUNNING" and job["metadata"] == metadata


# -- 5. the caller leaves --------------------------------------------------------------------------


async def test_caller_leaves_and_everything_is_released(
    lkserver: LkServer,
    agent_worker: Proc,
    provider: ProviderHarness,
) -> None:
    turn = ScriptTurn(reply_text="Goodbye.", tone_hz=400.0, reply_audio_ms=700)
    async with scripted(provider, lkserver, [turn], FALLBACK) as (run, callers):
        caller = await join(callers, lkserver, "s-leave")
        _agent, recording = await agent_ready(caller)
        said = caller.say(speech("thank_you"))
        await said.finished.wait()
        await wait_reply(caller, recording, said.started_at, 0.5)
        await caller.close()
        left = time.monotonic()

        state = await lkserver.wait_state(
            lambda s: (
                LkServer.room(s, "s-leave") is None
                and LkServer.jobs(s, "s-leave")[0]["status"] != "JS_RUNNING"
            ),
            20,
            "the job to end and the room to close",
        )
        (job,) = LkServer.jobs(state, "s-leave")
        assert job["status"] == "JS_SUCCESS", job
        assert job["history"][-2:] == ["JS_RUNNING", "JS_SUCCESS"]
        closed = next(r for r in state["closed_rooms"] if r["name"] == "s-leave")
        assert closed["participants"] == [], closed
        # The worker ended the job itself, before the room's departure timeout closed it.
        assert closed["close_reason"] == "departure timeout"
        assert 0 < job["ended_at_ms"] < closed["closed_at_ms"], (job, closed)
        open_participants = sum(len(r["participants"]) for r in state["rooms"])
        assert state["peer_connections"] == 2 * open_participants, state
        await caller.wait_for(
            lambda: all(s.closed for s in run.observe().sessions), 5, "provider session closed"
        )
        elapsed = time.monotonic() - left
        assert elapsed < 15, f"ending took {elapsed:.1f} s"


# -- 6. two rooms at once ------------------------------------------------------------------------


async def test_two_rooms_at_once(
    lkserver: LkServer,
    agent_worker: Proc,
    provider: ProviderHarness,
) -> None:
    turn = ScriptTurn(reply_text="Hello from your agent.", tone_hz=480.0, reply_audio_ms=1200)
    async with scripted(provider, lkserver, [], turn) as (run, callers):
        pair = await asyncio.gather(
            join(callers, lkserver, "s-duo-1", identity="duo-1"),
            join(callers, lkserver, "s-duo-2", identity="duo-2"),
        )
        ready = await asyncio.gather(*(agent_ready(c) for c in pair))
        state = await lkserver.state()
        jobs = LkServer.jobs(state, "s-duo-1") + LkServer.jobs(state, "s-duo-2")
        assert [j["status"] for j in jobs] == ["JS_RUNNING", "JS_RUNNING"], jobs
        assert len({j["participant_identity"] for j in jobs}) == 2

        said = [c.say(speech("weather_paris")) for c in pair]
        await asyncio.gather(*(u.finished.wait() for u in said))
        for caller, (agent, recording), utterance in zip(pair, ready, said, strict=True):
            start = await wait_reply(caller, recording, utterance.started_at, 1.0)
            assert_tone(recording.dominant_frequency(start, time.monotonic()), turn.tone_hz)
            await caller.wait_for(
                functools.partial(has_final_text, caller, agent, turn.reply_text),
                10,
                "the agent transcript",
            )
        assert len(run.observe().sessions) == 2
