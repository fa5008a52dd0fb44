"""The bridge between a room and a speech-to-speech session.

Tasks, all owned by one TaskGroup inside `Bridge.run()`:

  input pump   source frames -> InputConverter -> bounded input queue (sheds the oldest
               frame when the session falls behind)
  sender       the one task calling session.send_audio, in order
  reader       session events: reply audio is re-framed into the bounded output queue (never
               waiting on the sink), INTERRUPTED clears sink and queue at once, tool calls
               start tool tasks, transcripts and hooks go to the callback task
  writer       output queue -> sink.capture (the sink paces faster-than-real-time replies)
  callbacks    hooks and on_transcript, in order, so slow app code never delays audio
  tool tasks   one per call, cancellable until its result is being sent
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from livekit import rtc

from agent.audio.framing import InputConverter, PcmConverter
from agent.audio.sink import AudioSink
from agent.s2s import (
    ConversationContext,
    EventType,
    Hook,
    Hooks,
    ProviderError,
    S2SError,
    Session,
    SessionClosedError,
    SessionEvent,
    ToolCall,
    ToolResult,
    call_hook,
)
from agent.telemetry import Telemetry
from agent.tools import ToolRegistry

log = logging.getLogger(__name__)

AgentState = Literal["initializing", "listening", "thinking", "speaking"]
TranscriptCallback = Callable[[SessionEvent], Awaitable[None] | None]

_SHED_LOG_INTERVAL_S = 5.0
_REMEMBERED_IDS = 256  # interrupted turns and finished tool calls kept to ignore late repeats
_MARK_SLACK = 64  # room in the reply queue for turn marks beyond the audio limit


@dataclass(frozen=True, slots=True)
class _Mark:
    """Between frames in the output queue: a reply's audio starts, or is complete (end)."""

    turn: str | None
    end: bool


_OutItem = bytes | _Mark  # frames stay bare bytes: no per-frame container for the GC


class Bridge:
    """Connects an audio source, a Session and an AudioSink, and runs the session's tools.

    `run()` pumps until the session's events end or `close()` is called; provider failures
    surface as ERROR events, `on_error` and log lines, never as exceptions out of run().
    """

    def __init__(
        self,
        session: Session,
        sink: AudioSink,
        *,
        source: AsyncIterable[rtc.AudioFrame] | None = None,
        tools: ToolRegistry | None = None,
        hooks: Hooks | None = None,
        on_transcript: TranscriptCallback | None = None,
        on_state: Callable[[AgentState], None] | None = None,
        context: ConversationContext | None = None,
        provider: str = "",
        model: str = "",
        tool_timeout_s: float = 15.0,
        telemetry: Telemetry | None = None,
        max_input_backlog_ms: int = 200,
        max_reply_buffer_s: float = 60.0,
        max_tool_calls: int = 16,
        close_timeout_s: float = 5.0,
    ) -> None:
        self._session = session
        self._sink = sink
        self._source = source
        self._tools = tools if tools is not None else ToolRegistry()
        self._hooks = hooks if hooks is not None else Hooks()
        self._on_transcript = on_transcript
        self._on_state = on_state
        self._tool_timeout_s = tool_timeout_s
        self._max_tool_calls = max_tool_calls
        self._close_timeout_s = close_timeout_s
        self._telemetry = telemetry or Telemetry(provider=provider, model=model, context=context)

        in_fmt, out_fmt = session.input_format, session.output_format
        self._out_rate = out_fmt.sample_rate
        self._sink_bytes_per_ms = sink.sample_rate * 2 / 1000.0
        self._out_conv = PcmConverter(sink.sample_rate, out_fmt.frame_ms)
        self._in_q: asyncio.Queue[bytes] = asyncio.Queue(
            max(1, max_input_backlog_ms // in_fmt.frame_ms)
        )
        # Frames beyond the limit are dropped, never waited for: a reader blocked on a full
        # queue could not see a barge-in. The slack above the limit keeps turn marks.
        self._out_limit = max(1, int(max_reply_buffer_s * 1000 / out_fmt.frame_ms))
        self._out_q: asyncio.Queue[_OutItem] = asyncio.Queue(self._out_limit + _MARK_SLACK)
        self._overflow_turns: dict[str, None] = {}
        self._reply_dropped = 0
        self._cb_q: asyncio.Queue[tuple[Hook, SessionEvent] | None] = asyncio.Queue(256)

        self._state: AgentState = "initializing"
        # Reader side: the turn whose audio is arriving.
        self._rx_turn: str | None = None
        self._rx_open = False
        self._dropped_turns: dict[str, None] = {}
        self._drop_untagged = False  # interrupted turn had no id: drop audio until TURN_END
        # Writer side: the reply being played.
        self._play_turn: str | None = None
        self._next_turn: _Mark | None = None  # start mark seen, its first frame not yet
        self._play_active = False
        self._play_ending = False  # all its audio is in the sink; waiting for playout
        self._pushed_bytes = 0
        self._last_played_ms = 0.0
        self._heard: dict[str | None, float] = {}  # recent finished replies: played ms
        self._clear_generation = 0
        self._user_done_at: float | None = None
        # Tools.
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}  # still cancellable
        self._all_tool_tasks: set[asyncio.Task[None]] = set()
        self._finished_calls: dict[str, None] = {}
        # Lifecycle.
        self._tg: asyncio.TaskGroup | None = None
        self._input_task: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._own_tasks: set[asyncio.Task[Any]] = set()
        self._source_lock = asyncio.Lock()
        self._started = False
        self._stopping = False
        self._closing = False
        self._finished = asyncio.Event()
        self._input_closed = False
        self._shed_total = 0
        self._shed_unlogged = 0
        self._shed_logged_at = -_SHED_LOG_INTERVAL_S
        self._callbacks_dropped = 0
        self._send_errors = 0
        self._sink_errors = 0

    # -- public API ---------------------------------------------------------------------------

    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def current_turn_id(self) -> str | None:
        """The reply being played, else the turn whose events are arriving."""
        return self._play_turn if self._play_active else self._rx_turn

    @property
    def shed_frames(self) -> int:
        """Input frames dropped so far because the session could not keep up."""
        return self._shed_total

    @property
    def dropped_reply_frames(self) -> int:
        """Reply frames dropped because they were more than max_reply_buffer_s ahead."""
        return self._reply_dropped

    def played_ms(self) -> float:
        """How much of the current (or last) reply has actually been played."""
        if not self._play_active:
            return self._last_played_ms
        pushed_ms = self._pushed_bytes / self._sink_bytes_per_ms
        return max(pushed_ms - self._sink.queued_ms, 0.0)

    def heard_ms(self, turn_id: str | None) -> float | None:
        """How much of reply `turn_id` was played: live while it plays, then final (as sent
        with interrupt() for an interrupted one). None for a turn not played recently.
        Safe to call from hooks, which run a little after the event."""
        if self._play_active and turn_id == self._play_turn:
            return self.played_ms()
        return self._heard.get(turn_id)

    async def run(self) -> None:
        if self._started:
            raise RuntimeError("Bridge.run() can only be called once")
        self._started = True
        if self._closing:
            self._finished.set()
            return
        self._telemetry.start_session()
        self._set_state("listening")
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                callbacks = self._spawn(self._dispatch_callbacks(), "bridge-callbacks")
                sender = self._spawn(self._send_input(), "bridge-sender")
                writer = self._spawn(self._write_output(), "bridge-writer")
                if self._source is not None:
                    self._input_task = self._spawn(self._pump_input(self._source), "bridge-input")
                self._reader_task = self._spawn(self._read_events(), "bridge-reader")
                await asyncio.wait([self._reader_task])
                await self._shutdown([sender, writer], callbacks)
        finally:
            self._tg = None
            self._telemetry.end_session()
            self._finished.set()
            if not self._closing:
                await self._close_session()

    async def set_source(self, source: AsyncIterable[rtc.AudioFrame] | None) -> None:
        """Swap the input (participant rejoined or left); the old pump is cancelled and
        awaited. The sender (and so the order of sent audio) carries on."""
        async with self._source_lock:
            self._source = source
            old, self._input_task = self._input_task, None
            if old is not None:
                old.cancel()
                await asyncio.wait([old])
            if source is not None and self._tg is not None and not self._stopping:
                self._input_task = self._spawn(self._pump_input(source), "bridge-input")

    async def close(self) -> None:
        """Close the session and stop every task; idempotent."""
        if self._closing:
            if self._started and not self._inside():
                await self._finished.wait()
            return
        self._closing = True
        await self._close_session()
        if not self._started or self._inside():
            return
        try:
            async with asyncio.timeout(self._close_timeout_s):
                await self._finished.wait()
        except TimeoutError:
            log.warning("session events did not end %.1f s after close()", self._close_timeout_s)
            if self._reader_task is not None:
                self._reader_task.cancel()
            await self._finished.wait()

    async def __aenter__(self) -> Bridge:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- lifecycle ------------------------------------------------------------------------------

    def _spawn[T](self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        assert self._tg is not None
        task = self._tg.create_task(coro, name=name)
        self._own_tasks.add(task)
        task.add_done_callback(self._own_tasks.discard)
        return task

    def _inside(self) -> bool:
        return asyncio.current_task() in self._own_tasks

    async def _shutdown(
        self, workers: list[asyncio.Task[None]], callbacks: asyncio.Task[None]
    ) -> None:
        self._stopping = True
        if self._input_task is not None:
            self._input_task.cancel()
        for task in [*workers, *self._all_tool_tasks]:
            task.cancel()
        self._tool_tasks.clear()
        _drain(self._in_q)
        _drain(self._out_q)
        if self._closing:
            self._sink.clear()
        # Let queued hooks run (e.g. on_error for a failed stream), but not forever.
        try:
            self._cb_q.put_nowait(None)
            async with asyncio.timeout(2.0):
                await asyncio.wait([callbacks])
        except (asyncio.QueueFull, TimeoutError):
            pass
        callbacks.cancel()
        self._play_active = False

    async def _close_session(self) -> None:
        try:
            await self._session.close()
        except Exception:
            log.warning("closing the session failed", exc_info=True)

    # -- input ----------------------------------------------------------------------------------

    async def _pump_input(self, source: AsyncIterable[rtc.AudioFrame]) -> None:
        fmt = self._session.input_format
        converter = InputConverter(fmt.sample_rate, fmt.frame_ms)
        queue = self._in_q
        try:
            async for frame in source:
                for chunk in converter.push(frame):
                    if queue.full():
                        await asyncio.sleep(0)  # a burst after a stall: let the sender run
                    if queue.full():
                        queue.get_nowait()  # shed the oldest: stale audio is worth least
                        self._count_shed()
                    queue.put_nowait(chunk)
        except Exception:
            log.warning("input source failed; no more input from it", exc_info=True)

    async def _send_input(self) -> None:
        queue, send = self._in_q, self._session.send_audio
        while True:
            chunk = await queue.get()
            if self._input_closed:
                continue
            try:
                await send(chunk)
            except SessionClosedError:
                self._input_closed = True
            except Exception as exc:
                self._send_errors += 1
                if _worth_logging(self._send_errors):
                    log.warning("send_audio failed (%d times so far): %r", self._send_errors, exc)

    def _count_shed(self) -> None:
        self._shed_total += 1
        self._shed_unlogged += 1
        self._telemetry.shed(1)
        now = time.monotonic()
        if now - self._shed_logged_at >= _SHED_LOG_INTERVAL_S:
            log.warning(
                "session is not keeping up with input audio: dropped %d frames (%d in total)",
                self._shed_unlogged,
                self._shed_total,
            )
            self._shed_logged_at, self._shed_unlogged = now, 0

    # -- events ---------------------------------------------------------------------------------

    async def _read_events(self) -> None:
        events = aiter(self._session.events())
        while True:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            except Exception as exc:
                self._stream_failed(exc)
                return
            try:
                await self._handle(event)
            except Exception:  # a bug here must not end the conversation
                log.exception("handling %r failed", event)

    def _stream_failed(self, exc: Exception) -> None:
        if self._closing:
            log.debug("event stream ended with %r after close()", exc)
            return
        error = (
            exc
            if isinstance(exc, S2SError)
            else ProviderError(f"event stream failed: {type(exc).__name__}: {exc}")
        )
        log.error("session event stream failed: %r", error, exc_info=exc)
        self._telemetry.error(error)
        self._emit(self._hooks.on_error, SessionEvent(type=EventType.ERROR, error=error))

    async def _handle(self, event: SessionEvent) -> None:
        kind = event.type
        if kind is EventType.AUDIO_OUTPUT:
            await self._on_audio(event)
        elif kind is EventType.INTERRUPTED:
            await self._on_interrupted(event)
        elif kind is EventType.TURN_END:
            await self._on_turn_end(event)
        elif kind is EventType.TOOL_CALL:
            self._on_tool_call(event)
        elif kind is EventType.TOOL_CALL_CANCELLED:
            self._on_tool_cancelled(event)
        elif kind is EventType.TRANSCRIPT:
            if event.final:
                self._user_done_at = time.perf_counter()
                self._think()
            self._emit(self._on_transcript, event)
        elif kind is EventType.TEXT_OUTPUT:
            if not self._is_dropped(event.turn_id):
                self._telemetry.start_turn(event.turn_id)
            self._emit(self._on_transcript, event)
        elif kind is EventType.ERROR:
            self._on_error(event)

    def _is_dropped(self, turn: str | None) -> bool:
        return self._drop_untagged if turn is None else turn in self._dropped_turns

    async def _on_audio(self, event: SessionEvent) -> None:
        turn = event.turn_id
        if not event.audio or self._is_dropped(turn):
            return
        if not self._rx_open or turn != self._rx_turn:
            if self._rx_open:  # the previous turn never got its TURN_END
                await self._queue_out(self._out_conv.flush())
            self._rx_turn, self._rx_open = turn, True
            self._telemetry.start_turn(turn)
            await self._queue_out([_Mark(turn, end=False)])
        await self._queue_out(self._out_conv.push_pcm(event.audio, self._out_rate))

    async def _queue_out(self, items: list[bytes] | list[_Mark]) -> None:
        queue = self._out_q
        for item in items:
            if isinstance(item, bytes) and queue.qsize() >= self._out_limit:
                self._drop_reply_frame()
                continue
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:  # only if marks outgrow their slack
                await queue.put(item)

    def _drop_reply_frame(self) -> None:
        self._reply_dropped += 1
        turn = self._rx_turn or ""
        if turn not in self._overflow_turns:
            _remember(self._overflow_turns, turn, None)
            log.warning(
                "reply audio is more than %d frames ahead of playout; dropping the excess of"
                " turn %s (%d frames dropped in total)",
                self._out_limit,
                turn or "?",
                self._reply_dropped,
            )

    async def _on_turn_end(self, event: SessionEvent) -> None:
        turn = event.turn_id
        if self._is_dropped(turn):
            if turn is None:
                self._drop_untagged = False
        else:
            if self._rx_open and turn == self._rx_turn:
                await self._queue_out(self._out_conv.flush())
                self._rx_open = False
            await self._queue_out([_Mark(turn, end=True)])
        self._emit(self._hooks.on_turn, event)

    async def _on_interrupted(self, event: SessionEvent) -> None:
        seen = time.perf_counter()
        turn = event.turn_id
        if turn is None:
            turn = self._play_turn if self._play_active else self._rx_turn
        if self._play_active and turn == self._play_turn:
            played = self.played_ms()
        elif turn == self._play_turn:
            played = self._last_played_ms
        else:
            played = 0.0
        # Stop playback first; everything else can wait.
        _drain(self._out_q)
        self._sink.clear()
        self._clear_generation += 1
        self._telemetry.flush_latency((time.perf_counter() - seen) * 1000.0)

        if turn is not None:
            _remember(self._dropped_turns, turn, None)
        elif self._rx_open:
            self._drop_untagged = True
        self._out_conv.reset()
        self._rx_open = False
        if self._play_active:
            self._telemetry.end_turn(self._play_turn, interrupted=True, played_ms=played)
        self._telemetry.end_turn(turn, interrupted=True, played_ms=played)
        self._play_active = self._play_ending = False
        self._next_turn = None
        self._last_played_ms = played
        _remember(self._heard, turn, played)
        self._set_state("listening")
        log.debug("barge-in on turn %s after %.0f ms of playout", turn, played)
        try:
            await self._session.interrupt(played_ms=round(played))
        except SessionClosedError:
            pass
        except Exception:
            log.warning("session.interrupt() failed", exc_info=True)
        self._emit(self._hooks.on_interrupt, event)

    def _on_error(self, event: SessionEvent) -> None:
        error = event.error or ProviderError("the provider reported an error")
        level = logging.WARNING if error.recoverable else logging.ERROR
        log.log(level, "session error: %r", error)
        self._telemetry.error(error)
        self._emit(self._hooks.on_error, event)

    # -- output ---------------------------------------------------------------------------------

    async def _write_output(self) -> None:
        queue, sink = self._out_q, self._sink
        while True:
            if self._play_ending:
                item = await self._next_or_drained()
                if item is None:
                    self._finish_reply()
                    continue
            else:
                item = await queue.get()
            if isinstance(item, bytes):
                if self._next_turn is not None:
                    self._start_reply(self._next_turn.turn)
                generation = self._clear_generation
                try:
                    await sink.capture(item)
                except Exception as exc:
                    self._sink_errors += 1
                    if _worth_logging(self._sink_errors):
                        log.warning(
                            "sink.capture failed (%d times so far): %r", self._sink_errors, exc
                        )
                    continue
                if generation == self._clear_generation:
                    self._pushed_bytes += len(item)
            elif not item.end:
                self._next_turn = item
            elif self._next_turn is not None and self._next_turn.turn == item.turn:
                self._next_turn = None  # it ended before any of its frames got here
                self._turn_without_audio(item.turn)
            elif self._play_active and item.turn == self._play_turn:
                self._play_ending = True
            else:
                self._turn_without_audio(item.turn)

    async def _next_or_drained(self) -> _OutItem | None:
        """The next queued item, or None once the sink has played everything."""
        while True:
            queued_ms = self._sink.queued_ms
            if queued_ms <= 0.0 or not self._play_ending:
                return None
            try:
                async with asyncio.timeout(queued_ms / 1000.0):
                    return await self._out_q.get()
            except TimeoutError:
                continue

    def _start_reply(self, turn: str | None) -> None:
        if self._play_active:  # the previous reply's tail is still playing
            _remember(self._heard, self._play_turn, self.played_ms())
            self._telemetry.end_turn(self._play_turn, played_ms=self.played_ms())
        self._next_turn = None
        self._play_turn, self._play_active, self._play_ending = turn, True, False
        self._pushed_bytes = 0
        self._set_state("speaking")
        if self._user_done_at is not None:
            self._telemetry.reply_latency((time.perf_counter() - self._user_done_at) * 1000.0)
            self._user_done_at = None

    def _finish_reply(self) -> None:
        if not (self._play_active and self._play_ending):
            return
        self._play_active = self._play_ending = False
        self._last_played_ms = self._pushed_bytes / self._sink_bytes_per_ms
        _remember(self._heard, self._play_turn, self._last_played_ms)
        self._telemetry.end_turn(self._play_turn, played_ms=self._last_played_ms)
        self._set_state("thinking" if self._tool_tasks else "listening")

    def _turn_without_audio(self, turn: str | None) -> None:
        self._telemetry.end_turn(turn)
        if not self._play_active:
            self._set_state("thinking" if self._tool_tasks else "listening")

    # -- tools ----------------------------------------------------------------------------------

    def _on_tool_call(self, event: SessionEvent) -> None:
        call = event.tool_call
        if call is None:
            log.warning("TOOL_CALL event without a tool call")
            return
        if call.id in self._tool_tasks or call.id in self._finished_calls:
            log.warning("ignoring repeated tool call %s (%s)", call.id, call.name)
            return
        if not self._is_dropped(event.turn_id):
            self._telemetry.start_turn(event.turn_id)
        self._think()
        self._emit(self._hooks.on_tool_call, event)
        rejected = len(self._tool_tasks) >= self._max_tool_calls
        task = self._spawn(self._run_tool(call, event.turn_id, rejected), f"tool-{call.name}")
        self._tool_tasks[call.id] = task
        self._all_tool_tasks.add(task)
        task.add_done_callback(self._all_tool_tasks.discard)

    def _on_tool_cancelled(self, event: SessionEvent) -> None:
        for call_id in event.call_ids:
            task = self._tool_tasks.pop(call_id, None)
            _remember(self._finished_calls, call_id, None)
            if task is not None:
                log.info("tool call %s cancelled by the provider", call_id)
                task.cancel()

    async def _run_tool(self, call: ToolCall, turn: str | None, rejected: bool) -> None:
        span = self._telemetry.start_tool(call, turn)
        started = time.perf_counter()
        try:
            if rejected:
                message = f"too many tool calls in flight (limit {self._max_tool_calls})"
                result = ToolResult(call.id, json.dumps({"error": message}), is_error=True)
            else:
                result = await self._tools.run(call, timeout_s=self._tool_timeout_s)
        except asyncio.CancelledError:
            self._telemetry.end_tool(span, call, started, "cancelled")
            raise
        except Exception as exc:  # a registry bug must not end the conversation
            log.exception("tool %s (call %s) crashed", call.name, call.id)
            message = f"tool {call.name!r} failed: {type(exc).__name__}: {exc}"
            result = ToolResult(call.id, json.dumps({"error": message}), is_error=True)
        # From here on a cancellation comes too late: the result is sent exactly once.
        self._tool_tasks.pop(call.id, None)
        _remember(self._finished_calls, call.id, None)
        self._telemetry.end_tool(span, call, started, "error" if result.is_error else "ok")
        try:
            await self._session.send_tool_result(result)
        except SessionClosedError:
            log.info("tool result for %s not sent: the session is closed", call.id)
        except Exception:
            log.warning("sending the tool result for %s failed", call.id, exc_info=True)

    # -- callbacks and state ----------------------------------------------------------------------

    def _emit(self, callback: Hook | None, event: SessionEvent) -> None:
        if callback is None:
            return
        try:
            self._cb_q.put_nowait((callback, event))
        except asyncio.QueueFull:
            self._callbacks_dropped += 1
            if _worth_logging(self._callbacks_dropped):
                log.warning(
                    "callbacks are too slow: dropped %d events so far", self._callbacks_dropped
                )

    async def _dispatch_callbacks(self) -> None:
        while (item := await self._cb_q.get()) is not None:
            await call_hook(*item)

    def _think(self) -> None:
        if self._state != "speaking":
            self._set_state("thinking")

    def _set_state(self, state: AgentState) -> None:
        if state == self._state:
            return
        self._state = state
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                log.exception("on_state callback failed")


def _drain(queue: asyncio.Queue[Any]) -> None:
    while not queue.empty():
        queue.get_nowait()


def _worth_logging(count: int) -> bool:
    """Log a repeating problem on its 1st, 10th, 100th and every 1000th occurrence."""
    return count in (1, 10, 100) or count % 1000 == 0


def _remember[K, V](recent: dict[K, V], key: K, value: V) -> None:
    """Add to a bounded insertion-ordered dict, forgetting the oldest entry."""
    recent.pop(key, None)
    recent[key] = value
    if len(recent) > _REMEMBERED_IDS:
        del recent[next(iter(recent))]
