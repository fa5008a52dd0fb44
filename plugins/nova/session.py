"""A live Nova Sonic conversation: one audio block per stream, renewal, recovery.

Tasks: each Connection owns its writer and reader; the session owns a supervisor (deadlines,
recovery), at most one standby-preparing task, and the tasks that close replaced streams.
close() cancels and awaits all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, Literal

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient

from agent.s2s import (
    AudioFormat,
    ConversationContext,
    EventStream,
    EventType,
    HistoryMessage,
    ProviderError,
    S2SError,
    SessionBase,
    SessionClosedError,
    SessionEvent,
    ToolResult,
)

from .config import NovaSettings
from .errors import Failure, classify
from .history import Conversation
from .protocol import (
    INPUT_SAMPLE_RATE,
    OUTPUT_SAMPLE_RATE,
    CompletionEnded,
    CompletionStarted,
    InferenceConfig,
    OutputParser,
    Usage,
    tool_result_payload,
)
from .renewal import AudioBuffer, RenewalClock
from .telemetry import Telemetry
from .transport import ClientPool, Connection

log = logging.getLogger(__name__)

INPUT_FORMAT = AudioFormat(sample_rate=INPUT_SAMPLE_RATE, frame_ms=32)  # the default
OUTPUT_FORMAT = AudioFormat(sample_rate=OUTPUT_SAMPLE_RATE, frame_ms=20)
_ROLE = {"user": "USER", "assistant": "ASSISTANT"}
_MAX_ANSWERED = 4096
_MAX_PENDING_TEXT = 16
# Reply audio arrives faster than real time and the listener hears it later: a renewal
# waits until the reply has (by estimate) finished playing, plus this much for the sink.
PLAYOUT_MARGIN_S = 0.25
OUTPUT_BYTES_PER_S = OUTPUT_SAMPLE_RATE * 2
# After INTERRUPTED a renewal waits this long for interrupt(played_ms), so the new stream's
# history holds what the app measured rather than our own estimate.
INTERRUPT_WAIT_S = 1.0

State = Literal["new", "open", "recovering", "closing", "closed"]


class _Log(logging.LoggerAdapter[logging.Logger]):
    """Prefixes provider/model/context ids (never secrets) to every line."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['ids']}] {msg}" if self.extra else msg, kwargs


class NovaSession(SessionBase):
    """One conversation. Create with `NovaS2S.start()`."""

    def __init__(
        self,
        settings: NovaSettings,
        *,
        pool: ClientPool,
        history: Sequence[HistoryMessage] = (),
        context: ConversationContext | None = None,
    ) -> None:
        self._s = settings
        self._pool = pool
        self._ctx = context or ConversationContext()
        ids = [f"provider=nova model={settings.model_id}"]
        for key in ("session_id", "conversation_id", "user_id"):
            value = getattr(self._ctx, key)
            if value:
                ids.append(f"{key}={value}")
        self._log = _Log(log, {"ids": " ".join(ids)})
        self._telemetry = Telemetry(settings.model_id)
        self._inference = InferenceConfig(settings.max_tokens, settings.top_p, settings.temperature)
        self._events = EventStream(settings.event_queue_size)
        self._conv = Conversation(history)
        self._turn_numbers = itertools.count(1)
        user_numbers = itertools.count(1)
        self._next_user = lambda: f"user-{next(user_numbers)}"
        self._stream_numbers = itertools.count(1)
        self._client: AsyncBedrockRuntimeClient | None = None
        self._state: State = "new"
        self._current: Connection | None = None
        self._standby: Connection | None = None
        self._parsers: dict[Connection, OutputParser] = {}
        self._clock = RenewalClock(
            settings.renewal_after_s, settings.max_session_s, settings.standby_max_age_s
        )
        self._rolling = AudioBuffer(settings.renewal_buffer_s)
        self._held = AudioBuffer(settings.reconnect_buffer_s)  # while no stream takes audio
        self._pending_text: list[str] = []
        self._pending_tools: dict[str, tuple[Connection, str]] = {}  # id → (stream, tool)
        self._cancelled_tools: OrderedDict[str, str] = OrderedDict()  # id → tool name
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._speaking_turn: str | None = None
        self._speech_started_at = 0.0  # first audio of the reply being played
        self._speech_bytes = 0
        self._playout_end = 0.0  # when the listener will have heard all of it (estimate)
        self._last_turn: str | None = None
        self._turn_started_at: float | None = None  # first event of the latest assistant turn
        self._interrupted_turn: str | None = None  # the turn of the latest INTERRUPTED
        self._hold_until = 0.0  # no renewal before then: waiting for interrupt(played_ms)
        self._last_rx = 0.0  # the current stream's latest event
        self._reply_due_at: float | None = None  # asked for a reply that has not started
        self._renew_wanted = False  # armed and an assistant turn started: prepare a standby
        self._handover_due = False  # armed and a turn ended: switch once the standby is ready
        self._wake = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._standby_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._dropped_frames = 0
        self.renewals = 0
        self.reconnects = 0
        self.last_handover_ms: float | None = None

    def __repr__(self) -> str:
        return f"NovaSession(model={self._s.model_id!r}, state={self._state})"

    # ------------------------------------------------------------------ Session API

    @property
    def input_format(self) -> AudioFormat:
        """16 kHz PCM16; 32 ms frames unless extra["input_frame_ms"] asks for 64 (about a
        quarter less CPU: each audioInput event is separately signed)."""
        if self._s.input_frame_ms == INPUT_FORMAT.frame_ms:
            return INPUT_FORMAT
        return AudioFormat(sample_rate=INPUT_SAMPLE_RATE, frame_ms=self._s.input_frame_ms)

    @property
    def output_format(self) -> AudioFormat:
        return OUTPUT_FORMAT

    @property
    def settings(self) -> NovaSettings:
        return self._s

    @property
    def dropped_frames(self) -> int:
        return self._dropped_frames

    def events(self) -> AsyncIterator[SessionEvent]:
        return aiter(self._events)

    def history(self) -> list[HistoryMessage]:
        """The conversation as it would be replayed into a new stream now."""
        return self._conv.messages(self._s.spec.history)

    async def send_audio(self, pcm: bytes) -> None:
        if self._state in ("closing", "closed"):
            raise SessionClosedError()
        if not pcm:
            return
        if len(pcm) % 2:
            raise S2SError("PCM16 audio needs an even number of bytes", code="bad_audio")
        now = time.monotonic()
        self._rolling.append(pcm, now)
        current = self._current
        if current is not None and current.audio_open and current.alive:
            if not current.send_audio(pcm, now):
                self._shed(1, "send queue full")
        else:
            self._shed(self._held.append(pcm, now), "reconnect buffer full")

    async def send_text(self, text: str) -> None:
        if self._state in ("closing", "closed"):
            raise SessionClosedError()
        if not self._s.spec.accepts_text_input:
            raise S2SError(
                f"{self._s.spec.base_id} can't take text input mid-session (only Nova 2"
                " Sonic accepts it); pass earlier text as history to start() instead",
                code="unsupported",
            )
        if not text.strip():
            return
        self._send_user_text(text)

    def _send_user_text(self, text: str) -> None:
        """Interactive USER text (Nova 2 only): now, or after the reconnect under way."""
        current = self._current
        if current is not None and current.audio_open and current.alive:
            current.send_many(current.builder.text_block("USER", text, interactive=True))
            self._conv.user(text, time.monotonic(), typed=True)
            self._expect_reply()
        elif len(self._pending_text) < _MAX_PENDING_TEXT:
            self._pending_text.append(text)
        else:
            self._log.warning("dropping text input: reconnecting and %d queued", _MAX_PENDING_TEXT)

    async def send_tool_result(self, result: ToolResult) -> None:
        if self._state in ("closing", "closed"):
            raise SessionClosedError()
        call_id = result.call_id
        if call_id in self._answered:
            self._log.warning("tool result for %s already sent; duplicate dropped", call_id)
            return
        self._mark_answered(call_id)
        pending = self._pending_tools.pop(call_id, None)
        if pending is None:
            name = self._cancelled_tools.pop(call_id, None)
            if name is None:
                self._log.warning("tool result for unknown call %s dropped", call_id)
            else:
                self._late_tool_result(name, result)
            return
        conn, name = pending
        if conn is not self._current or not conn.alive:
            self._late_tool_result(name, result)  # its stream died before the result came
            return
        payload = tool_result_payload(result.content, is_error=result.is_error)
        conn.send_many(conn.builder.tool_result_block(call_id, payload))
        self._log.debug("tool result for %s sent (%d bytes)", call_id, len(payload))
        self._expect_reply()

    def _late_tool_result(self, name: str, result: ToolResult) -> None:
        """The result of a call whose stream was replaced: the new stream never saw the call,
        so a toolResult would be rejected and the model would wait forever. Nova 2 gets the
        result as user text so it can still answer; v1 can't take text mid-session."""
        call_id = result.call_id
        if not self._s.spec.accepts_text_input:
            self._log.warning(
                "tool result for %s (%s) dropped: the call was cancelled when its stream was"
                " replaced, and %s can't take it as text; the user has to ask again",
                call_id,
                name,
                self._s.spec.base_id,
            )
            return
        self._log.info("tool result for cancelled call %s (%s) sent as user text", call_id, name)
        label = f"Error from {name}" if result.is_error else f"Result of {name}"
        self._send_user_text(f"{label}: {result.content}")

    async def interrupt(self, played_ms: int | None = None) -> None:
        """Nova detects barge-in itself; this records how much of the interrupted reply was
        heard (the turn of the latest INTERRUPTED, else the latest turn) and releases a
        renewal held for that measurement."""
        self._playout_end = min(self._playout_end, time.monotonic())
        turn = self._interrupted_turn or self._last_turn
        self._interrupted_turn = None  # one measurement per INTERRUPTED
        if played_ms is not None and turn is not None and self._conv.heard(turn, float(played_ms)):
            self._log.debug("turn %s: %d ms heard before the barge-in", turn, played_ms)
        if self._hold_until:
            self._hold_until = 0.0
            self._wake.set()  # the supervisor hands over now if one is due

    async def close(self) -> None:
        if self._state == "closed":
            return
        if self._state == "closing":
            await self._closed.wait()
            return
        await self._shutdown()

    # ------------------------------------------------------------------ start

    async def _start(self) -> None:
        """Connect (retrying transient failures) and open the audio block."""
        self._client = await self._pool.acquire(self._s)
        try:
            conn = await self._connect_with_retries("initial")
        except BaseException:
            self._state = "closed"
            await self._release_client()
            self._events.close()
            self._closed.set()
            raise
        self._switch_in(conn, replay=[])
        self._state = "open"
        self._supervisor = asyncio.create_task(self._supervise(), name="nova-supervisor")
        self._log.info("session started (voice=%s, region=%s)", self._s.voice, self._s.region)

    async def _connect_with_retries(self, label: str) -> Connection:
        policy = self._s.retry
        attempt = 0
        while True:
            try:
                return await self._open_connection(label)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = classify(exc)
                if not failure.retryable or attempt >= policy.max_retries:
                    raise ProviderError(failure.message, code=failure.code) from exc
                delay = policy.delay(attempt, random.random())
                self._log.warning(
                    "connect failed (%s: %s); retry %d/%d in %.2fs",
                    failure.code,
                    failure.message,
                    attempt + 1,
                    policy.max_retries,
                    delay,
                )
                attempt += 1
                await asyncio.sleep(delay)

    async def _open_connection(self, label: str) -> Connection:
        """A new stream with sessionStart, promptStart and the system prompt sent."""
        assert self._client is not None
        conn = Connection(
            client=self._client,
            model_id=self._s.model_id,
            label=f"{label}-{next(self._stream_numbers)}",
            on_payload=self._on_payload,
            on_end=self._on_end,
            backlog_frames=self._s.send_backlog_frames,
            coalesce_frames=self._s.max_coalesce_frames,
        )
        self._parsers[conn] = OutputParser(
            turn_ids=lambda: self._next_turn(conn), user_turn_ids=self._next_user
        )
        b = conn.builder
        preamble = [
            b.session_start(self._inference, endpointing=self._s.endpointing),
            b.prompt_start(voice=self._s.voice, tools=self._s.tools, choice=self._s.tool_choice),
            *b.text_block("SYSTEM", self._s.instructions, interactive=False),
        ]
        try:
            await conn.open(preamble, self._s.connect_timeout_s)
        except BaseException:
            self._parsers.pop(conn, None)
            raise
        self._log.debug("stream %s open", conn.label)
        return conn

    def _switch_in(self, conn: Connection, replay: list[tuple[bytes, float]]) -> None:
        """Make `conn` current: history, the audio block, then replayed audio. No awaits, so
        no frame from send_audio can slip between the replay and the switch."""
        drop_since = replay[0][1] if replay else None
        b = conn.builder
        for message in self._conv.messages(self._s.spec.history, drop_user_since=drop_since):
            conn.send_many(b.text_block(_ROLE[message.role], message.text, interactive=False))
        conn.send(b.audio_start())
        conn.audio_open = True
        for pcm, at in replay:
            conn.send_audio(pcm, at, force=True)
        if self._s.spec.accepts_text_input:
            # Text sent while reconnecting: after the history, so it is not in it twice.
            for text in self._pending_text:
                conn.send_many(b.text_block("USER", text, interactive=True))
                self._conv.user(text, time.monotonic(), typed=True)
        self._current = conn
        self._last_rx = time.monotonic()
        self._reply_due_at = None
        if self._pending_text and self._s.spec.accepts_text_input:
            self._expect_reply()
        self._pending_text.clear()
        self._clock.reset(time.monotonic())
        self._renew_wanted = self._handover_due = False
        self._hold_until = 0.0
        self._speaking_turn = None

    # ------------------------------------------------------------------ output

    def _next_turn(self, conn: Connection) -> str:
        """Called by `conn`'s parser when an assistant turn begins: ids are unique per
        session. Only the current stream's turns move the replay cutoff and the turn that
        interrupt() falls back to; a replaced stream still closing must not."""
        turn = f"turn-{next(self._turn_numbers)}"
        if conn is self._current:
            self._last_turn = turn
            self._turn_started_at = time.monotonic()
            self._reply_due_at = None  # the reply is under way: watched as a turn now
            self._wake.set()
        return turn

    def _expect_reply(self) -> None:
        """Nova owes a reply now: the stall watchdog starts counting."""
        self._reply_due_at = time.monotonic()
        self._wake.set()

    def _quiet_since(self) -> float | None:
        """Since when the current stream has been silent while a reply is due from it (a
        reply was asked for or one is in progress), or None if nothing is due. Waiting for
        the app's tool result is not the model's silence."""
        current = self._current
        if current is None or any(c is current for c, _ in self._pending_tools.values()):
            return None
        if self._reply_due_at is not None:
            return max(self._reply_due_at, self._last_rx)
        parser = self._parsers.get(current)
        return self._last_rx if parser is not None and parser.turn_open else None

    async def _on_payload(self, conn: Connection, data: bytes) -> None:
        parser = self._parsers.get(conn)
        if parser is None:
            return
        if conn is self._current:
            self._last_rx = time.monotonic()
        for out in parser.feed(data):
            if isinstance(out, SessionEvent):
                await self._dispatch(conn, out)
            elif isinstance(out, Usage):
                self._telemetry.usage(out)
            elif isinstance(out, CompletionStarted):
                self._log.debug("stream %s: completion %s", conn.label, out.completion_id)
            elif isinstance(out, CompletionEnded):
                self._log.debug("stream %s: completion end %s", conn.label, out.stop_reason)

    async def _dispatch(self, conn: Connection, event: SessionEvent) -> None:
        if conn is not self._current:
            await self._dispatch_other(conn, event)
            return
        now = time.monotonic()
        kind = event.type
        turn = event.turn_id
        if kind is EventType.AUDIO_OUTPUT and turn is not None and event.audio is not None:
            self._conv.assistant_audio(turn, len(event.audio), now)
            if turn != self._speaking_turn:
                self._speaking_turn = turn
                self._speech_started_at, self._speech_bytes = now, 0
                self._on_speech_start()
            self._speech_bytes += len(event.audio)
            self._playout_end = (
                self._speech_started_at + self._speech_bytes / OUTPUT_BYTES_PER_S + PLAYOUT_MARGIN_S
            )
        elif kind is EventType.TEXT_OUTPUT and turn is not None and event.text is not None:
            self._conv.assistant_text(turn, event.text, final=event.final, at=now)
        elif kind is EventType.TRANSCRIPT and event.final and event.text:
            self._conv.user(event.text, now)
            self._expect_reply()
        elif kind is EventType.TOOL_CALL and event.tool_call is not None:
            call_id = event.tool_call.id
            if call_id in self._pending_tools or call_id in self._answered:
                self._log.debug("duplicate toolUse %s ignored", call_id)
                return
            self._pending_tools[call_id] = (conn, event.tool_call.name)
        elif kind is EventType.INTERRUPTED:
            # Playback stops now and the user is speaking: renew after the next reply. If
            # the cut turn ends now, its renewal waits for interrupt(played_ms); meanwhile
            # the history keeps only what our own playout estimate says was heard.
            if turn is not None:
                self._interrupted_turn = turn
                self._conv.heard(turn, self._estimate_heard_ms(turn, now), estimate=True)
            self._playout_end = min(self._playout_end, now)
            self._handover_due = False
            self._hold_until = now + INTERRUPT_WAIT_S
        elif kind is EventType.ERROR and event.error is not None:
            self._log.warning("stream %s: %s", conn.label, event.error.message)
            self._telemetry.error(event.error.code, True)
        await self._events.put(event)
        if kind is EventType.TURN_END:
            await self._on_turn_end()

    async def _dispatch_other(self, conn: Connection, event: SessionEvent) -> None:
        """Events from a standby (none expected) or a replaced stream. A replaced stream may
        still send the late FINAL text of a turn it played; anything else from it (a new
        turn, a late INTERRUPTED that would clear what now plays, the transcript of audio
        the new stream is replaying, a tool call nobody may answer) is dropped."""
        if (
            conn is not self._standby
            and event.type is EventType.TEXT_OUTPUT
            and event.turn_id is not None
            and event.text is not None
            and self._conv.has_turn(event.turn_id)
        ):
            self._conv.assistant_text(
                event.turn_id, event.text, final=event.final, at=time.monotonic()
            )
            await self._events.put(event)
            return
        self._log.debug("stream %s: dropping %s (not current)", conn.label, event.type)

    def _estimate_heard_ms(self, turn: str, now: float) -> float:
        """How much of `turn` has played by now, if playback began as its audio arrived."""
        if turn != self._speaking_turn:
            return 0.0  # none of its audio arrived on this stream
        played = (now - self._speech_started_at) * 1000
        return max(0.0, min(played, self._speech_bytes * 1000 / OUTPUT_BYTES_PER_S))

    # ------------------------------------------------------------------ renewal

    def _on_speech_start(self) -> None:
        if self._clock.armed(time.monotonic()) and not self._renew_wanted:
            self._renew_wanted = True
            self._log.debug("renewal armed: preparing the next stream during this reply")
            self._ensure_standby()

    async def _on_turn_end(self) -> None:
        if not self._clock.armed(time.monotonic()):
            return
        self._handover_due = True
        if not self._try_handover("renewal"):
            self._ensure_standby()
            self._wake.set()  # the supervisor re-checks once the reply has been heard

    def _ensure_standby(self) -> None:
        if self._state != "open" or self._standby is not None:
            return
        if self._standby_task is not None and not self._standby_task.done():
            return
        self._standby_task = asyncio.create_task(self._prepare_standby(), name="nova-standby")

    async def _prepare_standby(self) -> None:
        try:
            conn = await self._open_connection("standby")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = classify(exc)
            self._log.warning("standby stream failed (%s: %s)", failure.code, failure.message)
            self._wake.set()  # the supervisor retries or forces renewal at the deadline
            return
        if self._state != "open":
            await conn.finish([conn.builder.prompt_end(), conn.builder.session_end()], 0.5)
            return
        self._standby = conn
        self._log.debug("standby stream %s ready", conn.label)
        if not self._try_handover("renewal"):
            self._wake.set()

    def _try_handover(self, reason: str, *, force: bool = False, deadline: bool = False) -> bool:
        """Switch to the ready standby now if the moment is right: no reply or tool call in
        progress and (unless past the deadline) the last reply heard. `force` cuts in."""
        standby, current = self._standby, self._current
        if standby is None or not standby.alive or current is None or self._state != "open":
            return False
        parser = self._parsers.get(current)
        now = time.monotonic()
        if not force and (
            not self._handover_due
            or self._pending_tools
            or (parser and parser.turn_open)
            or now < self._hold_until
            or (not deadline and now < self._playout_end)
        ):
            return False
        self._handover(standby, current, reason)
        return True

    def _handover(self, standby: Connection, old: Connection, reason: str) -> None:
        started = time.perf_counter()
        self._standby = None
        events: list[SessionEvent] = []
        parser = self._parsers.get(old)
        if parser is not None:
            events.extend(parser.end_turn())
        cancelled = self._cancel_calls(old)
        if cancelled:
            events.append(SessionEvent(type=EventType.TOOL_CALL_CANCELLED, call_ids=cancelled))
        old.closing = True
        # Audio from before this reply began was answered by the old stream: replay only what
        # came after (a barge-in, or speech the old stream had no time to answer).
        replay = self._rolling.frames(since=self._turn_started_at)
        self._switch_in(standby, replay=replay)
        self._retire(old)
        self.last_handover_ms = (time.perf_counter() - started) * 1000
        self.renewals += 1
        self._telemetry.renewal(self.last_handover_ms, reason)
        self._log.info(
            "renewed stream (%s): %s → %s, handover %.2f ms, %d frames replayed",
            reason,
            old.label,
            standby.label,
            self.last_handover_ms,
            len(replay),
        )
        if events:
            self._spawn(self._put_all(events), "nova-handover-events")

    async def _put_all(self, events: list[SessionEvent]) -> None:
        for event in events:
            await self._events.put(event)

    def _retire(self, old: Connection) -> None:
        """Close a replaced stream in the background: end audio, prompt and session."""
        b = old.builder
        final = [b.audio_end()] if old.audio_open else []
        old.audio_open = False
        final += [b.prompt_end(), b.session_end()]
        self._spawn(self._finish(old, final), f"nova-close-{old.label}")

    async def _finish(self, conn: Connection, final: list[bytes]) -> None:
        """End a stream politely (`final` events, then our side), or just drop a dead one."""
        try:
            if final:
                await conn.finish(final, self._s.close_timeout_s)
            else:
                await conn.abort()
        finally:
            self._parsers.pop(conn, None)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.warning("background task %s failed: %r", task.get_name(), task.exception())

    # ------------------------------------------------------------------ supervision

    def _on_end(self, conn: Connection) -> None:
        """A stream ended without us closing it (called from its reader or writer)."""
        if conn is self._standby:
            self._standby = None
            self._log.info("standby stream %s died; it will be replaced", conn.label)
            self._spawn(self._finish(conn, []), f"nova-drop-{conn.label}")
        self._wake.set()

    async def _supervise(self) -> None:
        try:
            while self._state in ("open", "recovering"):
                now = time.monotonic()
                standby_at = self._standby.opened_at if self._standby else None
                wait = self._clock.next_check(now, standby_at)
                if self._handover_due and self._standby is not None:
                    for then in (self._playout_end, self._hold_until):
                        if then > now:
                            wait = min(wait, then - now)
                quiet = self._quiet_since()
                if quiet is not None:
                    wait = min(wait, quiet + self._s.stall_timeout_s - now)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.01, wait)):
                        await self._wake.wait()
                self._wake.clear()
                if self._state != "open":
                    return
                current = self._current
                if current is not None and not current.alive and not current.closing:
                    await self._recover(current)
                    continue
                quiet = self._quiet_since()
                if current is not None and quiet is not None:
                    silent_s = time.monotonic() - quiet
                    if silent_s >= self._s.stall_timeout_s:
                        message = f"Nova sent nothing for {silent_s:.1f} s while a reply was due"
                        await self._recover(current, Failure("stalled", message, True))
                        continue
                await self._check_renewal()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: end cleanly rather than hang the conversation
            self._log.exception("supervisor failed")
            await self._fail(Failure("internal", f"internal error: {exc!r}", False))

    async def _check_renewal(self) -> None:
        now = time.monotonic()
        standby = self._standby
        if standby is not None and self._clock.standby_stale(now, standby.opened_at):
            self._standby = None
            self._log.debug("standby %s too old; replacing it", standby.label)
            self._spawn(
                self._finish(
                    standby, [standby.builder.prompt_end(), standby.builder.session_end()]
                ),
                f"nova-close-{standby.label}",
            )
            if self._renew_wanted or self._handover_due:
                self._ensure_standby()
            return
        if self._clock.overdue(now):
            if self._standby is None:
                self._handover_due = True
                self._ensure_standby()
                if self._standby_task is not None:
                    with contextlib.suppress(Exception):
                        await self._standby_task
            force = self._clock.must_force(time.monotonic())
            if self._standby is None and self._state == "open":
                # No standby could be opened yet: try again shortly.
                await asyncio.sleep(self._s.retry.delay(0, random.random()))
            else:
                self._try_handover("deadline", force=force, deadline=True)
        elif (self._renew_wanted or self._handover_due) and self._standby is None:
            self._ensure_standby()
        elif self._handover_due:
            self._try_handover("renewal")

    async def _recover(self, dead: Connection, failure: Failure | None = None) -> None:
        """Replace a dead (or stalled: `failure` says why) stream, with the history."""
        failure = failure or classify(dead.error)
        self._state = "recovering"
        self._current = None
        dead.closing = True
        # Frames still queued for the dead stream are older than any held since it died.
        held = self._held.drain()
        self._shed(self._held.extend(dead.unsent_audio() + held), "reconnect buffer full")
        parser = self._parsers.get(dead)
        if parser is not None:
            await self._put_all(parser.end_turn())
        cancelled = self._cancel_calls(dead)
        if cancelled:
            await self._events.put(
                SessionEvent(type=EventType.TOOL_CALL_CANCELLED, call_ids=cancelled)
            )
        self._spawn(self._finish(dead, []), f"nova-drop-{dead.label}")
        if not failure.retryable:
            await self._fail(failure)
            return
        self._log.warning(
            "stream %s ended (%s: %s); reconnecting", dead.label, failure.code, failure.message
        )
        await self._emit_error(failure, recoverable=True)
        self.reconnects += 1
        self._telemetry.reconnect(failure.code)
        policy = self._s.retry
        last = failure
        for attempt in range(policy.max_retries + 1):
            if self._state != "recovering":
                return
            standby, self._standby = self._standby, None
            if standby is not None and not standby.alive:
                self._spawn(self._finish(standby, []), f"nova-drop-{standby.label}")
                standby = None
            if standby is not None:
                conn = standby  # a ready standby takes over at once
            else:
                if attempt > 0 or last.throttled:
                    await asyncio.sleep(policy.delay(max(0, attempt - 1), random.random()))
                try:
                    conn = await self._open_connection("recover")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    last = classify(exc)
                    self._log.warning(
                        "reconnect %d/%d failed (%s: %s)",
                        attempt + 1,
                        policy.max_retries + 1,
                        last.code,
                        last.message,
                    )
                    if not last.retryable:
                        break
                    continue
            if self._state != "recovering":
                await conn.finish([], 0.2)
                return
            self._state = "open"
            self._switch_in(conn, replay=self._replay_after_failure())
            self._log.info("reconnected on stream %s", conn.label)
            return
        await self._fail(Failure(last.code, f"gave up reconnecting to Nova: {last.message}", False))

    def _replay_after_failure(self) -> list[tuple[bytes, float]]:
        """Audio for a stream that replaces a dead one: the held frames, preceded by the
        recent frames the dead stream got but never answered (from the reply's start, at
        most the rolling window), so a sentence cut by the failure is heard whole."""
        held = self._held.drain()
        cutoff = held[0][1] if held else float("inf")
        before = [f for f in self._rolling.frames(since=self._turn_started_at) if f[1] < cutoff]
        return before + held

    # ------------------------------------------------------------------ errors and close

    async def _emit_error(self, failure: Failure, *, recoverable: bool) -> None:
        self._telemetry.error(failure.code, recoverable)
        error = ProviderError(failure.message, code=failure.code, recoverable=recoverable)
        await self._events.put(SessionEvent(type=EventType.ERROR, error=error))

    async def _fail(self, failure: Failure) -> None:
        self._log.error("session failed (%s: %s)", failure.code, failure.message)
        with contextlib.suppress(asyncio.CancelledError):
            await self._emit_error(failure, recoverable=False)
        await self._shutdown()

    def _shed(self, frames: int, why: str) -> None:
        if frames <= 0:
            return
        if self._dropped_frames == 0 or (self._dropped_frames // 100) != (
            (self._dropped_frames + frames) // 100
        ):
            self._log.warning(
                "shedding user audio (%s): %d frames so far", why, self._dropped_frames + frames
            )
        self._dropped_frames += frames
        self._telemetry.dropped(frames)

    def _cancel_calls(self, conn: Connection) -> tuple[str, ...]:
        """Forget the calls `conn` was waiting on, remembering their tools for a late result."""
        cancelled = tuple(cid for cid, (c, _) in self._pending_tools.items() if c is conn)
        for cid in cancelled:
            _, name = self._pending_tools.pop(cid)
            self._cancelled_tools[cid] = name
        while len(self._cancelled_tools) > _MAX_ANSWERED:
            self._cancelled_tools.popitem(last=False)
        return cancelled

    def _mark_answered(self, call_id: str) -> None:
        self._answered[call_id] = None
        while len(self._answered) > _MAX_ANSWERED:
            self._answered.popitem(last=False)

    async def _shutdown(self) -> None:
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        self._wake.set()
        me = asyncio.current_task()
        for task in (self._supervisor, self._standby_task):
            if task is not None and task is not me and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        current, self._current = self._current, None
        standby, self._standby = self._standby, None
        closing: list[Coroutine[Any, Any, None]] = []
        if current is not None:
            b = current.builder
            final = [b.audio_end()] if current.audio_open else []
            current.audio_open = False
            closing.append(self._finish(current, [*final, b.prompt_end(), b.session_end()]))
        if standby is not None:
            closing.append(
                self._finish(standby, [standby.builder.prompt_end(), standby.builder.session_end()])
            )
        for task in list(self._background):
            closing.append(_await_task(task))
        await asyncio.gather(*closing, return_exceptions=True)
        for conn in list(self._parsers):
            await conn.abort()
        self._parsers.clear()
        await self._release_client()
        self._events.close()
        self._state = "closed"
        self._closed.set()
        self._log.info(
            "session closed (renewals=%d, reconnects=%d, dropped_frames=%d)",
            self.renewals,
            self.reconnects,
            self._dropped_frames,
        )

    async def _release_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._pool.release(client)


async def _await_task(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
