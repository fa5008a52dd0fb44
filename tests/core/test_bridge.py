"""The bridge: audio both ways, barge-in, tools, hooks, state, shedding and lifecycle."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import numpy as np
import pytest
from livekit import rtc

from agent.audio import MemorySink
from agent.bridge import AgentState, Bridge
from agent.s2s import EventType, Hooks, ProviderError, S2SError, SessionEvent
from agent.tools import ToolRegistry
from tests.support.scripted import ScriptedSession, tone

from .helpers import frames, running, sine, until

pytestmark = pytest.mark.timeout(20)

OUT_RATE = 24000
FRAME_MS = 20
OUT_FRAME = OUT_RATE * FRAME_MS // 1000 * 2  # bytes per 20 ms output frame


def make(
    sink: MemorySink | None = None, **kwargs: object
) -> tuple[ScriptedSession, MemorySink, Bridge]:
    session = ScriptedSession()
    sink = sink or MemorySink(OUT_RATE, clock="instant")
    return session, sink, Bridge(session, sink, **kwargs)  # type: ignore[arg-type]


# -- audio ------------------------------------------------------------------------------------


async def test_audio_flows_both_ways() -> None:
    stereo48 = np.repeat(sine(48000, 48000), 2).tobytes()  # 1 s, 48 kHz stereo
    session, sink, bridge = make(source=frames(stereo48, 48000, 2))
    reply = tone(300, OUT_RATE)
    async with running(bridge):
        for i in range(0, len(reply), 1000):  # odd chunk sizes: the bridge re-frames them
            await session.audio(reply[i : i + 1000], "t1")
        await session.end_turn("t1")
        await until(lambda: len(sink.played) == len(reply) and session.frames_in >= 48)
    assert bytes(sink.played) == reply  # every reply sample, in order, nothing more
    assert {len(f) for f in session.audio_in} == {640}  # 20 ms at 16 kHz mono
    assert 48 <= session.frames_in <= 50


async def test_input_of_the_session_format_is_sent_exactly() -> None:
    rng = np.random.default_rng(5)
    pcm = rng.integers(-32768, 32767, 16000, dtype=np.int16).tobytes()

    async def odd_frames() -> AsyncIterator[rtc.AudioFrame]:
        offset = 0
        while offset < len(pcm):
            n = int(rng.integers(1, 400))
            chunk = pcm[offset : offset + 2 * n]
            offset += 2 * n
            yield rtc.AudioFrame(chunk, 16000, 1, len(chunk) // 2)
            await asyncio.sleep(0)

    session, _, bridge = make(source=odd_frames())
    async with running(bridge):
        await until(lambda: session.frames_in == 50)
    sent = b"".join(session.audio_in)
    assert sent == pcm[: len(sent)] and len(sent) == 50 * 640


async def test_output_is_resampled_to_the_sink_rate() -> None:
    sink = MemorySink(48000, clock="instant")
    session, _, bridge = make(sink)
    async with running(bridge):
        await session.reply(500, "t1")
        await until(lambda: len(sink.played) >= 2 * 24000 * 2 * 0.5 - 2 * 960)
    assert abs(len(sink.played) // 2 - 24000) <= 960 // 2  # 500 ms at 48 kHz


async def test_input_sheds_oldest_frames_visibly_when_the_session_lags(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pcm = sine(16000 * 2, 16000).tobytes()  # 100 frames, delivered at once
    session = ScriptedSession(send_delay_s=0.05)
    bridge = Bridge(
        session, MemorySink(clock="instant"), source=frames(pcm, 16000), max_input_backlog_ms=100
    )
    with caplog.at_level(logging.WARNING, logger="agent.bridge"):
        async with running(bridge):
            await until(lambda: bridge.shed_frames >= 80)
            await asyncio.sleep(0.4)  # let the sender catch up with the (bounded) backlog
    assert "not keeping up" in caplog.text
    sent = session.frames_in
    assert sent + bridge.shed_frames == 100
    assert sent <= 20  # the backlog never grew beyond ~100 ms
    assert session.audio_in[-1] == pcm[-640:]  # the newest audio got through


async def test_set_source_swaps_input_and_cancels_the_old_pump() -> None:
    cancelled = asyncio.Event()

    async def endless(value: int) -> AsyncIterator[rtc.AudioFrame]:
        try:
            while True:
                yield rtc.AudioFrame(bytes([value, 0]) * 320, 16000, 1, 320)
                await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    session, _, bridge = make(source=endless(1))
    async with running(bridge):
        await until(lambda: session.frames_in >= 3)
        await bridge.set_source(endless(2))
        assert cancelled.is_set()
        count = session.frames_in
        await until(lambda: session.frames_in >= count + 3)
        assert session.audio_in[-1][0] == 2
        await bridge.set_source(None)
        await asyncio.sleep(0.02)
        count = session.frames_in
        await asyncio.sleep(0.05)
        assert session.frames_in == count  # no source, nothing sent


# -- barge-in -----------------------------------------------------------------------------------


async def test_interrupt_is_not_stuck_behind_a_full_sink() -> None:
    # Manual clock: nothing plays, the sink's queue is full and the writer is blocked in
    # capture(); the reader must still see INTERRUPTED and clear at once.
    sink = MemorySink(OUT_RATE, clock="manual", queue_ms=200)
    interrupted: list[SessionEvent] = []
    session, _, bridge = make(sink, hooks=Hooks(on_interrupt=interrupted.append))
    async with running(bridge):
        await session.reply(5000, "t1", end=False)  # 5 s of audio arrives at once
        await until(lambda: sink.queued_ms >= 200)
        sink.advance(60)  # 60 ms heard
        await until(lambda: sink.queued_ms >= 200)
        await session.interrupted("t1")
        await until(lambda: sink.clear_count == 1, within=0.5)
        assert sink.queued_ms == 0
        await session.audio(tone(500, OUT_RATE), "t1")  # late audio of the interrupted turn
        await session.end_turn("t1")
        await until(lambda: len(interrupted) == 1)
        sink.advance(1000)
        await asyncio.sleep(0.05)
        assert sink.played_bytes == 60 * OUT_RATE * 2 // 1000  # nothing after the barge-in
        assert session.interrupts == [60]
        assert bridge.state == "listening" and bridge.played_ms() == 60
        # The next reply plays normally.
        await session.reply(100, "t2")
        await until(lambda: sink.queued_ms > 0)
        assert bridge.heard_ms("t2") == 0.0  # queued, not yet heard
        sink.advance(200)
        await until(lambda: sink.played_bytes == (60 + 100) * OUT_RATE * 2 // 1000)
        await until(lambda: bridge.state == "listening")
        assert bridge.heard_ms("t1") == 60 and bridge.heard_ms("t2") == 100
        assert bridge.heard_ms("t0") is None


async def test_interrupt_is_not_stuck_behind_a_full_reply_buffer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A reply far ahead of playout overflows the bridge's reply buffer: the excess is dropped
    # (counted, logged once) instead of blocking the reader, so INTERRUPTED is still seen.
    sink = MemorySink(OUT_RATE, clock="manual", queue_ms=200)
    session, _, bridge = make(sink, max_reply_buffer_s=1.0)
    async with running(bridge):
        await session.reply(3000, "t1", end=False)  # 3 s at once; 1 s buffer + 200 ms sink
        await until(lambda: bridge.dropped_reply_frames > 0)
        await session.interrupted("t1")
        await until(lambda: sink.clear_count == 1, within=0.5)
        assert session.interrupts == [0]
    # All but the 1 s buffer (less a slot for the turn mark) and what the sink took.
    dropped = bridge.dropped_reply_frames
    assert (3000 - 1000 - 200) // FRAME_MS - 1 <= dropped <= (3000 - 1000) // FRAME_MS + 1
    overflow_logs = [r for r in caplog.records if "ahead of playout" in r.getMessage()]
    assert len(overflow_logs) == 1


async def test_interrupt_after_turn_end_clears_within_one_frame() -> None:
    # Real-time sink: the whole reply (and its TURN_END) arrived long before it was heard.
    sink = MemorySink(OUT_RATE, queue_ms=200)
    session, _, bridge = make(sink)
    async with running(bridge):
        await session.reply(2000, "t1")
        await until(lambda: sink.played_ms >= 300)
        before = sink.played_ms
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await session.interrupted("t1")
        await until(lambda: sink.clear_count == 1, within=0.5)
        flush_ms = (loop.time() - sent_at) * 1000
        heard_after = sink.played_ms - before
        await session.audio(tone(300, OUT_RATE), "t1")  # late audio of the turn: dropped
        await asyncio.sleep(0.3)
        final = sink.played_ms
    assert flush_ms < FRAME_MS
    assert heard_after < FRAME_MS  # at most one frame played after INTERRUPTED was sent
    assert final - before < FRAME_MS
    assert len(session.interrupts) == 1
    assert session.interrupts[0] == pytest.approx(final, abs=FRAME_MS)  # played_ms is right


async def test_interrupt_mid_reply_reports_played_ms_and_drops_the_rest() -> None:
    sink = MemorySink(OUT_RATE, clock="manual", queue_ms=200)
    turns: list[SessionEvent] = []
    session, _, bridge = make(sink, hooks=Hooks(on_turn=turns.append))
    async with running(bridge):
        await session.reply(1000, "t1", end=False)
        await until(lambda: sink.queued_ms >= 200)
        for _ in range(7):  # 140 ms heard, in steps
            sink.advance(20)
            await asyncio.sleep(0.005)
        assert bridge.played_ms() == pytest.approx(140, abs=FRAME_MS)
        assert bridge.current_turn_id == "t1" and bridge.state == "speaking"
        await session.interrupted("t1")
        await until(lambda: session.interrupts != [])
        await session.reply(500, "t1")  # the provider still streams the rest: never played
        await until(lambda: len(turns) == 1)
        sink.advance(2000)
        await asyncio.sleep(0.02)
    assert session.interrupts[0] == pytest.approx(140, abs=FRAME_MS)
    assert sink.played_ms == pytest.approx(140, abs=FRAME_MS)


async def test_interrupt_without_turn_ids_drops_until_turn_end() -> None:
    sink = MemorySink(OUT_RATE, clock="manual", queue_ms=100)
    session, _, bridge = make(sink)
    async with running(bridge):
        await session.reply(1000, None, end=False)
        await until(lambda: sink.queued_ms >= 100)
        sink.advance(40)
        await session.interrupted(None)
        await until(lambda: sink.clear_count == 1)
        await session.reply(300, None)  # rest of the interrupted reply, then its TURN_END
        await session.reply(100, None)  # the next reply
        await until(lambda: sink.queued_ms >= 99)
        sink.advance(1000)
        await asyncio.sleep(0.02)
    assert sink.played_ms == pytest.approx(40 + 100, abs=1)
    assert session.interrupts == [40]


# -- tools --------------------------------------------------------------------------------------


def registry_with_tools(log: list[str]) -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool
    async def lookup(city: str) -> dict[str, str]:
        """Look up a city."""
        log.append(f"lookup:{city}")
        return {"city": city, "weather": "sunny"}

    @reg.tool
    def failing() -> None:
        raise RuntimeError("database down")

    @reg.tool
    async def slow() -> str:
        await asyncio.sleep(5)
        return "too late"

    @reg.tool
    async def calendar() -> dict[object, str]:
        """A result JSON can't encode: a tuple as a key."""
        return {(2025, 1, 1): "new year"}

    return reg


async def test_tool_call_runs_once_and_result_is_sent_once() -> None:
    calls: list[str] = []
    hooked: list[SessionEvent] = []
    session, _, bridge = make(
        tools=registry_with_tools(calls), hooks=Hooks(on_tool_call=hooked.append)
    )
    async with running(bridge):
        await session.tool_call("lookup", {"city": "Oslo"}, call_id="c1")
        await session.tool_call("lookup", {"city": "Oslo"}, call_id="c1")  # repeated at once
        await session.wait_for(lambda s: len(s.tool_results) == 1)
        await session.tool_call("lookup", {"city": "Oslo"}, call_id="c1")  # and after the result
        await asyncio.sleep(0.05)
    assert calls == ["lookup:Oslo"]
    [result] = session.tool_results
    assert result.call_id == "c1" and not result.is_error
    assert json.loads(result.content) == {"city": "Oslo", "weather": "sunny"}
    assert [e.tool_call.id for e in hooked if e.tool_call] == ["c1"]


async def test_failing_tools_give_error_results_and_the_session_goes_on() -> None:
    session, sink, bridge = make(tools=registry_with_tools([]), tool_timeout_s=0.1)
    async with running(bridge):
        await session.tool_call("failing", {}, call_id="fail")
        await session.tool_call("nope", {}, call_id="unknown")
        await session.tool_call("slow", {}, call_id="timeout")
        await session.tool_call("lookup", "{not json", call_id="badjson")
        await session.tool_call("lookup", {"town": "x"}, call_id="invalid")
        await session.tool_call("calendar", {}, call_id="unencodable")
        await session.wait_for(lambda s: len(s.tool_results) == 6)
        await session.tool_call("lookup", {"city": "Rome"}, call_id="ok")
        await session.reply(100, "t2")
        await session.wait_for(lambda s: len(s.tool_results) == 7)
        await until(lambda: len(sink.played) == 100 * OUT_RATE * 2 // 1000)
    results = {r.call_id: r for r in session.tool_results}
    errors = {k: json.loads(r.content)["error"] for k, r in results.items() if r.is_error}
    assert set(errors) == {"fail", "unknown", "timeout", "badjson", "invalid", "unencodable"}
    assert "can't be sent" in errors["unencodable"]
    assert "database down" in errors["fail"]
    assert "unknown tool 'nope'" in errors["unknown"]
    assert "timed out" in errors["timeout"]
    assert "not valid JSON" in errors["badjson"]
    assert "invalid arguments" in errors["invalid"]
    assert not results["ok"].is_error


async def test_cancelled_tool_call_sends_nothing_and_is_cancelled() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    reg = ToolRegistry()

    @reg.tool
    async def book(seat: str) -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "booked"

    session, _, bridge = make(tools=reg)
    async with running(bridge):
        await session.tool_call("book", {"seat": "1A"}, call_id="c1")
        await asyncio.wait_for(started.wait(), 2)
        await session.cancel_tool_calls("c1")
        await asyncio.wait_for(cancelled.wait(), 2)
        await session.tool_call("book", {"seat": "1A"}, call_id="c1")  # a stale repeat: ignored
        await asyncio.sleep(0.1)
    assert session.tool_results == []


async def test_tools_run_concurrently_with_audio() -> None:
    release = asyncio.Event()
    reg = ToolRegistry()

    @reg.tool
    async def wait_for_it() -> str:
        await release.wait()
        return "done"

    session, sink, bridge = make(tools=reg)
    async with running(bridge):
        await session.tool_call("wait_for_it", {}, call_id="c1")
        await session.reply(200, "t1")
        await until(lambda: len(sink.played) == 200 * OUT_RATE * 2 // 1000)
        assert session.tool_results == []  # audio played while the tool was still running
        release.set()
        await session.wait_for(lambda s: len(s.tool_results) == 1)


# -- transcripts, hooks, state -----------------------------------------------------------------


async def test_hooks_and_transcripts_fire_and_a_raising_hook_is_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def bad_turn(event: SessionEvent) -> None:
        raise RuntimeError("hook bug")

    async def on_error(event: SessionEvent) -> None:
        await asyncio.sleep(0)
        assert event.error is not None
        seen.append(f"error:{event.error.code}")

    def on_transcript(event: SessionEvent) -> None:
        seen.append(f"{event.type.value}:{event.text}")

    hooks = Hooks(
        on_turn=bad_turn,
        on_interrupt=lambda e: seen.append(f"interrupt:{e.turn_id}"),
        on_tool_call=lambda e: seen.append("tool"),
        on_error=on_error,
    )
    sink = MemorySink(OUT_RATE, clock="manual")
    session, _, bridge = make(sink, hooks=hooks, on_transcript=on_transcript)
    with caplog.at_level(logging.WARNING):
        async with running(bridge):
            await session.transcript("hello", final=True)
            await session.reply(100, "t1", text="hi there")
            await session.interrupted("t1")
            await session.tool_call("missing", {}, call_id="c1")
            await session.error(ProviderError("throttled", code="throttle", recoverable=True))
            await session.reply(100, "t2")  # still working after the raising hook
            await until(lambda: len(seen) >= 6)
            await until(lambda: sink.queued_ms >= 99)
    assert seen == [
        "transcript:hello",
        "text_output:hi there",
        "interrupt:t1",
        "tool",
        "error:throttle",
        "text_output:hello there",
    ]
    assert "hook bug" in caplog.text  # logged, survived
    assert "throttled" in caplog.text  # the ERROR event got a log line


async def test_state_transitions() -> None:
    states: list[AgentState] = []
    sink = MemorySink(OUT_RATE, queue_ms=100)
    session, _, bridge = make(sink, on_state=states.append)
    assert bridge.state == "initializing"
    async with running(bridge):
        await until(lambda: states == ["listening"])
        await session.transcript("what's the weather?", final=True)
        await until(lambda: bridge.state == "thinking")
        await session.reply(100, "t1")
        await until(lambda: bridge.state == "speaking")
        await until(lambda: bridge.state == "listening", within=2)
        assert sink.played_ms == pytest.approx(100, abs=1)  # back to listening once played
        await session.reply(1000, "t2")
        await until(lambda: bridge.state == "speaking")
        await session.interrupted("t2")
        await until(lambda: bridge.state == "listening")
    assert states == ["listening", "thinking", "speaking", "listening", "speaking", "listening"]


# -- lifecycle ----------------------------------------------------------------------------------


async def test_close_leaves_no_task_behind() -> None:
    before = asyncio.all_tasks()
    reg = ToolRegistry()

    @reg.tool
    async def forever() -> None:
        await asyncio.sleep(100)

    async def endless() -> AsyncIterator[rtc.AudioFrame]:
        while True:
            yield rtc.AudioFrame(b"\x00\x00" * 960, 48000, 1, 960)
            await asyncio.sleep(0.01)

    sink = MemorySink(OUT_RATE, clock="manual")
    session, _, bridge = make(sink, tools=reg, source=endless())
    task = asyncio.create_task(bridge.run())
    await session.reply(3000, "t1", end=False)  # the writer is blocked on a full sink
    await session.tool_call("forever", {}, call_id="c1")
    await until(lambda: session.frames_in > 2 and sink.queued_ms > 0)
    await bridge.close()
    await asyncio.wait_for(task, 2)
    await bridge.close()  # idempotent
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before
    assert session.closed and sink.queued_ms == 0
    assert session.tool_results == []


async def test_close_before_run_and_context_manager() -> None:
    session, _, bridge = make()
    async with bridge:
        pass
    assert session.closed
    await bridge.run()  # returns at once after close()
    with pytest.raises(RuntimeError):
        await bridge.run()


async def test_session_end_ends_run() -> None:
    session, _, bridge = make()
    task = asyncio.create_task(bridge.run())
    await asyncio.sleep(0.01)
    await session.close()
    await asyncio.wait_for(task, 2)


async def test_failing_event_iterator_fires_on_error_and_ends_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = asyncio.all_tasks()
    errors: list[SessionEvent] = []
    session, _, bridge = make(hooks=Hooks(on_error=errors.append))
    task = asyncio.create_task(bridge.run())
    with caplog.at_level(logging.ERROR, logger="agent.bridge"):
        await session.fail(ConnectionResetError("peer went away"))
        await asyncio.wait_for(task, 2)  # run() returns, no exception
    assert len(errors) == 1 and errors[0].type is EventType.ERROR
    error = errors[0].error
    assert isinstance(error, S2SError) and "peer went away" in error.message
    assert "event stream failed" in caplog.text
    assert session.closed
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before


async def test_close_does_not_hang_on_a_stuck_event_stream() -> None:
    class Stuck(ScriptedSession):
        async def close(self) -> None:  # a buggy provider whose events never end
            self.closed = True

    session = Stuck()
    bridge = Bridge(session, MemorySink(clock="instant"), close_timeout_s=0.1)
    task = asyncio.create_task(bridge.run())
    await asyncio.sleep(0.01)
    await asyncio.wait_for(bridge.close(), 2)
    await asyncio.wait_for(task, 1)


async def test_failing_sink_and_send_are_survived(caplog: pytest.LogCaptureFixture) -> None:
    class FlakySink(MemorySink):
        async def capture(self, pcm: bytes) -> None:
            if self.captured_bytes == 0 and not getattr(self, "failed", False):
                self.failed = True
                raise RuntimeError("audio device hiccup")
            await super().capture(pcm)

    class FlakySession(ScriptedSession):
        async def send_audio(self, pcm: bytes) -> None:
            if self.frames_in == 0 and not getattr(self, "failed", False):
                self.failed = True
                raise ProviderError("stream reset", recoverable=True)
            await super().send_audio(pcm)

    session = FlakySession()
    sink = FlakySink(OUT_RATE, clock="instant")
    pcm = sine(16000 // 5, 16000).tobytes()  # 10 frames
    bridge = Bridge(session, sink, source=frames(pcm, 16000))
    with caplog.at_level(logging.WARNING, logger="agent.bridge"):
        async with running(bridge):
            await session.reply(100, "t1")
            await until(lambda: len(sink.played) == 100 * 48 - OUT_FRAME)  # first frame lost
            await until(lambda: session.frames_in == 9)  # first frame lost
    assert "audio device hiccup" in caplog.text and "stream reset" in caplog.text
