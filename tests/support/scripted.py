"""A scripted speech-to-speech provider for tests and benchmarks (no network).

`ScriptedSession` implements `agent.s2s.Session` for real: it records everything the client
sends and emits whatever events the test pushes, through a bounded queue like a provider.

Direct use::

    session = ScriptedSession()                  # 16 kHz in, 24 kHz out, 20 ms frames
    await session.reply(ms=300, turn_id="t1")    # fast audio, TEXT_OUTPUT, TURN_END
    await session.interrupted("t1")              # INTERRUPTED after TURN_END, as providers do
    await session.tool_call("lookup", {"q": "x"}, call_id="c1")
    await session.cancel_tool_calls("c1")
    await session.error(ProviderError("boom", recoverable=True))
    await session.fail(RuntimeError("socket died"))   # the events() iterator raises this
    session.audio_in, session.texts, session.tool_results, session.interrupts  # what was sent
    await session.wait_for(lambda s: len(s.tool_results) == 1)

Through the registry (worker and e2e tests)::

    provider = register_scripted()               # name "scripted"; provider.unregister() after
    s2s = agent.s2s.new("scripted", Config(extra={"reply_after_frames": 50}))
    session = await s2s.start(instructions="hi")
    provider.sessions[-1] is session; provider.starts[-1]["instructions"] == "hi"

Auto-reply mode (`reply_after_frames=N`, in the constructor or `Config.extra`): after every N
input frames (and on every send_text) the session emits a user TRANSCRIPT (final), `reply_ms`
of a sine tone in `reply_chunk_ms` chunks, a final TEXT_OUTPUT and TURN_END. `reply_speed`
0 emits as fast as possible, 1.0 in real time. interrupt() stops the reply being emitted.
Other `Config.extra` keys: input_rate, output_rate, frame_ms, reply_ms, reply_chunk_ms,
reply_speed, tone_hz, send_delay_s (slow send_audio), record_audio.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np

from agent.s2s import (
    AudioFormat,
    Config,
    ConversationContext,
    EventType,
    HistoryMessage,
    S2SError,
    SessionBase,
    SessionClosedError,
    SessionEvent,
    ToolCall,
    ToolDefinition,
    ToolResult,
    register,
    unregister,
)

_END = object()


@functools.lru_cache(maxsize=32)
def tone(ms: float, sample_rate: int = 24000, hz: float = 440.0, amplitude: int = 8000) -> bytes:
    """`ms` of a mono PCM16 sine."""
    n = int(sample_rate * ms / 1000)
    t = np.arange(n) / sample_rate
    return (np.sin(2 * math.pi * hz * t) * amplitude).astype(np.int16).tobytes()


class ScriptedSession(SessionBase):
    """A Session whose events are pushed by the test; see the module docstring."""

    def __init__(
        self,
        *,
        input_rate: int = 16000,
        output_rate: int = 24000,
        frame_ms: int = 20,
        reply_after_frames: int | None = None,
        reply_ms: int = 500,
        reply_chunk_ms: int = 100,
        reply_speed: float = 0.0,
        tone_hz: float = 440.0,
        send_delay_s: float = 0.0,
        record_audio: bool = True,
        queue_size: int = 256,
    ) -> None:
        self.input_format = AudioFormat(input_rate, frame_ms)
        self.output_format = AudioFormat(output_rate, frame_ms)
        self.reply_after_frames = reply_after_frames
        self.reply_ms = reply_ms
        self.reply_chunk_ms = reply_chunk_ms
        self.reply_speed = reply_speed
        self.send_delay_s = send_delay_s
        self.record_audio = record_audio
        # What the client sent.
        self.audio_in: list[bytes] = []
        self.frames_in = 0
        self.bytes_in = 0
        self.texts: list[str] = []
        self.tool_results: list[ToolResult] = []
        self.interrupts: list[int | None] = []
        self.closed = False
        # Instrumentation for benchmarks.
        self.on_audio: Callable[[bytes], None] | None = None
        self.last_audio_emit = 0.0  # perf_counter() when the last AUDIO_OUTPUT was queued
        self.replies = 0
        self._queue: asyncio.Queue[SessionEvent | BaseException | object] = asyncio.Queue(
            queue_size
        )
        self._tone = tone(max(reply_ms, reply_chunk_ms), output_rate, tone_hz)
        self._frames_since_reply = 0
        self._reply_task: asyncio.Task[None] | None = None

    # -- Session protocol ---------------------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        self._check_open()
        self.frames_in += 1
        self.bytes_in += len(pcm)
        if self.record_audio:
            self.audio_in.append(pcm)
        if self.on_audio is not None:
            self.on_audio(pcm)
        if self.send_delay_s:
            await asyncio.sleep(self.send_delay_s)
        if self.reply_after_frames is not None:
            self._frames_since_reply += 1
            if self._frames_since_reply >= self.reply_after_frames:
                self._start_auto_reply()

    async def send_text(self, text: str) -> None:
        self._check_open()
        self.texts.append(text)
        if self.reply_after_frames is not None:
            self._start_auto_reply()

    async def send_tool_result(self, result: ToolResult) -> None:
        self._check_open()
        self.tool_results.append(result)

    async def events(self) -> AsyncIterator[SessionEvent]:
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # keep ending for any later iterator
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, SessionEvent)
            yield item

    async def interrupt(self, played_ms: int | None = None) -> None:
        self._check_open()
        self.interrupts.append(played_ms)
        await self._stop_reply()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self._stop_reply()
        try:
            self._queue.put_nowait(_END)
        except asyncio.QueueFull:  # the consumer lags: make room for the end marker
            self._queue.get_nowait()
            self._queue.put_nowait(_END)

    # -- scripting ------------------------------------------------------------------------------

    async def push(self, event: SessionEvent) -> None:
        """Emit any event (waits while the bounded event queue is full, like a provider)."""
        if event.type is EventType.AUDIO_OUTPUT:
            self.last_audio_emit = time.perf_counter()
        await self._queue.put(event)

    async def audio(self, pcm: bytes, turn_id: str | None = "t1") -> None:
        await self.push(SessionEvent(type=EventType.AUDIO_OUTPUT, audio=pcm, turn_id=turn_id))

    async def reply(
        self,
        ms: int,
        turn_id: str | None = "t1",
        *,
        chunk_ms: int = 100,
        text: str | None = "hello there",
        end: bool = True,
        speed: float = 0.0,
    ) -> None:
        """`ms` of tone as AUDIO_OUTPUT chunks (speed 0: at once; 1.0: real time), then a
        final TEXT_OUTPUT and TURN_END (unless end=False)."""
        rate = self.output_format.sample_rate
        pcm = tone(ms, rate)
        step = rate * chunk_ms // 1000 * 2
        start = time.perf_counter()
        for offset in range(0, len(pcm), step):
            if speed > 0:
                due = start + offset / (2 * rate) / speed
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await self.audio(pcm[offset : offset + step], turn_id)
        if text is not None:
            await self.text(text, turn_id)
        if end:
            await self.end_turn(turn_id)

    async def text(self, text: str, turn_id: str | None = "t1", *, final: bool = True) -> None:
        await self.push(
            SessionEvent(type=EventType.TEXT_OUTPUT, text=text, final=final, turn_id=turn_id)
        )

    async def transcript(self, text: str, *, final: bool = True, turn_id: str = "u1") -> None:
        await self.push(
            SessionEvent(type=EventType.TRANSCRIPT, text=text, final=final, turn_id=turn_id)
        )

    async def end_turn(self, turn_id: str | None = "t1") -> None:
        await self.push(SessionEvent(type=EventType.TURN_END, turn_id=turn_id))

    async def interrupted(self, turn_id: str | None = "t1") -> None:
        await self.push(SessionEvent(type=EventType.INTERRUPTED, turn_id=turn_id))

    async def tool_call(
        self,
        name: str,
        arguments: dict[str, Any] | str,
        *,
        call_id: str = "call-1",
        turn_id: str | None = "t1",
    ) -> None:
        """Emit TOOL_CALL; a str `arguments` is sent as is (to test bad JSON)."""
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call = ToolCall(call_id, name, raw)
        await self.push(SessionEvent(type=EventType.TOOL_CALL, tool_call=call, turn_id=turn_id))

    async def cancel_tool_calls(self, *call_ids: str) -> None:
        await self.push(SessionEvent(type=EventType.TOOL_CALL_CANCELLED, call_ids=call_ids))

    async def error(self, error: S2SError) -> None:
        await self.push(SessionEvent(type=EventType.ERROR, error=error))

    async def fail(self, exc: BaseException) -> None:
        """Make the events() iterator raise `exc` once it gets here."""
        await self._queue.put(exc)

    async def wait_for(
        self, predicate: Callable[[ScriptedSession], bool], within: float = 5.0
    ) -> None:
        """Poll until `predicate(self)` is true; TimeoutError otherwise."""
        async with asyncio.timeout(within):
            while not predicate(self):  # noqa: ASYNC110 (tests poll arbitrary conditions)
                await asyncio.sleep(0.002)

    # -- internals ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise SessionClosedError()

    def _start_auto_reply(self) -> None:
        self._frames_since_reply = 0
        if self._reply_task is None or self._reply_task.done():
            self._reply_task = asyncio.create_task(self._auto_reply(), name="scripted-reply")

    async def _auto_reply(self) -> None:
        self.replies += 1
        turn = f"t{self.replies}"
        await self.transcript("user said something", turn_id=f"u{self.replies}")
        rate = self.output_format.sample_rate
        step = rate * self.reply_chunk_ms // 1000 * 2
        total = rate * self.reply_ms // 1000 * 2
        start = time.perf_counter()
        with memoryview(self._tone) as view:
            for offset in range(0, total, step):
                if self.reply_speed > 0:
                    due = start + offset / (2 * rate) / self.reply_speed
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await self.audio(view[offset : min(offset + step, total)].tobytes(), turn)
        await self.text("a scripted reply", turn)
        await self.end_turn(turn)

    async def _stop_reply(self) -> None:
        task, self._reply_task = self._reply_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])


class ScriptedS2S:
    """The configured provider: `start()` returns a new ScriptedSession."""

    def __init__(self, config: Config, provider: ScriptedProvider | None = None) -> None:
        self._config = config
        self._provider = provider

    @property
    def config(self) -> Config:
        return self._config

    async def start(
        self,
        *,
        model: str | None = None,
        voice: str | None = None,
        instructions: str | None = None,
        tools: Sequence[ToolDefinition] | None = None,
        history: Sequence[HistoryMessage] | None = None,
        context: ConversationContext | None = None,
    ) -> ScriptedSession:
        options = {k: v for k, v in self._config.extra.items() if k in _SESSION_OPTIONS}
        session = ScriptedSession(**options)
        if self._provider is not None:
            self._provider.sessions.append(session)
            self._provider.starts.append(
                {
                    "model": model or self._config.model,
                    "voice": voice or self._config.voice,
                    "instructions": instructions or self._config.instructions,
                    "tools": list(tools if tools is not None else self._config.tools),
                    "history": list(history or []),
                    "context": context,
                }
            )
        return session


_SESSION_OPTIONS = {
    "input_rate",
    "output_rate",
    "frame_ms",
    "reply_after_frames",
    "reply_ms",
    "reply_chunk_ms",
    "reply_speed",
    "tone_hz",
    "send_delay_s",
    "record_audio",
}


class ScriptedProvider:
    """A registry factory that remembers every session it started (and its start options)."""

    def __init__(self, name: str = "scripted") -> None:
        self.name = name
        self.sessions: list[ScriptedSession] = []
        self.starts: list[dict[str, Any]] = []

    def __call__(self, config: Config) -> ScriptedS2S:
        return ScriptedS2S(config, self)

    def unregister(self) -> None:
        unregister(self.name)


def register_scripted(name: str = "scripted") -> ScriptedProvider:
    """Register the scripted provider under `name` (ValueError if taken); returns it."""
    provider = ScriptedProvider(name)
    register(name, provider)
    return provider
