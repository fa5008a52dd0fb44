"""One InvokeModelWithBidirectionalStream request: the signed input stream, the rules, and
a scripted model that answers like Nova Sonic.

Tasks per stream (all owned by `NovaSession.run`'s TaskGroup):
- the input loop (run's own body): decode outer frames, verify the chunk-signature chain,
  decode events, apply the rules, feed the endpointer;
- the model loop: turns, tool calls, paced reply audio, barge-in markers;
- the writer: the only code that writes the response stream (so cancelling the model never
  leaves half a message on the wire);
- the timers: connection lifetime and idle timeout.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import h2.errors

from .audio import EnergyEndpointer, SpeechEvent, sine_pcm16
from .eventstream import (
    EventStreamError,
    Header,
    HeaderType,
    Message,
    MessageDecoder,
    decode_message,
    encode_message,
)
from .http2 import H2Stream, StreamClosedError
from .records import StreamRecord, TurnRecord
from .rules import Action as RuleAction
from .rules import (
    AudioChunk,
    AudioEnded,
    AudioStarted,
    InputProtocol,
    Phase,
    PromptEnded,
    PromptStarted,
    ProtocolViolation,
    SessionEnded,
    ToolResult,
    UserText,
)
from .scenario import ExceptionMember, Faults, Scenario, ToolCallSpec, Turn
from .sigv4 import ChunkSignatureChain, Credentials, SignatureError

INTERRUPTED_MARKER = '{ "interrupted" : true }'
MODEL_TIMEOUT_MESSAGE = "Model has timed out in processing the request. Try your request again."
IDLE_TIMEOUT_MESSAGE = (
    "InternalErrorCode=531::RST_STREAM closed stream. HTTP/2 error code: NO_ERROR"
)
SERVICE = "bedrock"
WRITER_FLUSH_TIMEOUT_S = 5.0

_EVENT_HEADERS = (
    Header.string(":message-type", "event"),
    Header.string(":event-type", "chunk"),
    Header.string(":content-type", "application/json"),
)


def _now() -> float:
    return time.monotonic()


class EmulatorState:
    """What all streams of one emulator share: script, faults, counters, records."""

    def __init__(
        self,
        scenario: Scenario,
        faults: Faults,
        credentials: Credentials,
        region: str,
        *,
        keep_audio: bool = True,
    ) -> None:
        self.scenario = scenario
        # False: audio content is elided from recorded events and audio_in stays empty, so
        # long load runs do not hold every frame in memory (counts are still kept).
        self.keep_audio = keep_audio
        self.faults = faults
        self.credentials = credentials
        self.region = region
        self.streams: list[StreamRecord] = []
        self.turns_started = 0
        self.requests_seen = 0
        self.signature_failures = 0
        self.faults_fired: list[tuple[str, int]] = []
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, max_wait_s: float) -> None:
        event = self._changed
        try:
            async with asyncio.timeout(max_wait_s):
                await event.wait()
        except TimeoutError:
            pass

    def next_turn(self) -> int:
        self.turns_started += 1
        return self.turns_started

    def take_fault(self, name: str, turn: int | None, number: int) -> bool:
        if turn is None or turn != number or any(n == name for n, _ in self.faults_fired):
            return False
        self.faults_fired.append((name, number))
        return True


# --- output items (model/input → writer) -------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    data: bytes
    on_sent: Callable[[float], None] | None = None


@dataclass(frozen=True)
class _End:
    pass


@dataclass(frozen=True)
class _Reset:
    code: int


_OutItem = _Frame | _End | _Reset


# --- triggers (input → model) ------------------------------------------------------------


@dataclass(frozen=True)
class _TurnTrigger:
    kind: Literal["audio", "text"]
    text: str
    at: float
    speech_ms: float = 0.0


@dataclass
class _Playout:
    """The reply audio as the listener hears it: from the first byte sent, for its duration."""

    record: TurnRecord
    duration_s: float
    started_at: float | None = None
    interrupted: bool = False
    done_sending: bool = False
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)

    def playing(self, now: float) -> bool:
        return self.started_at is not None and now < self.started_at + self.duration_s


@dataclass(frozen=True)
class _InterruptTrigger:
    playout: _Playout


_Trigger = _TurnTrigger | _InterruptTrigger


class _OutputClosed(Exception):
    """The response stream is finished; the model has nothing more to do."""


class NovaSession:
    def __init__(
        self,
        *,
        state: EmulatorState,
        record: StreamRecord,
        stream: H2Stream,
        seed_signature: str,
    ) -> None:
        self._state = state
        self._scenario = state.scenario
        self._faults = state.faults
        self.record = record
        self._stream = stream
        self._chain = ChunkSignatureChain(
            secret_key=state.credentials.secret_key,
            region=state.region,
            service=SERVICE,
            seed_signature=seed_signature,
        )
        self._protocol = InputProtocol(record.model_id, state.scenario)
        self._out: asyncio.Queue[_OutItem] = asyncio.Queue(maxsize=64)
        self._triggers: asyncio.Queue[_Trigger] = asyncio.Queue(maxsize=16)
        self._model_task: asyncio.Task[None] | None = None
        self._output_open = True
        self._closed_at: float | None = None
        self._input_broken = False  # framing or signature failure: ignore the rest
        self._writer_gone = False  # the response stream closed under the writer
        self._session_id = str(uuid.uuid4())
        self._completion_id = str(uuid.uuid4())
        self._out_rate = 24000
        self._voice = ""
        self._endpointer: EnergyEndpointer | None = None
        self._playout: _Playout | None = None
        self._tool_waiters: dict[str, asyncio.Future[str]] = {}
        self._turn_active = False
        self._last_activity = _now()
        self._usage_in = {"speechTokens": 0, "textTokens": 0}
        self._usage_out = {"speechTokens": 0, "textTokens": 0}

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._writer(), name="bedrock-writer")
                self._model_task = tg.create_task(self._model_loop(), name="bedrock-model")
                timers = tg.create_task(self._timers(), name="bedrock-timers")
                try:
                    await self._input_loop()
                finally:
                    timers.cancel()
                    await self._stop_model()
                    await self._finish_writer(writer)
        finally:
            for future in self._tool_waiters.values():
                future.cancel()
            rec = self.record
            rec.unclean_reasons = self._unclean_reasons()
            rec.ended_cleanly = not rec.unclean_reasons
            rec.ended_at = _now()
            self._state.notify()

    def _unclean_reasons(self) -> list[str]:
        """A clean close: every block ended, promptEnd, sessionEnd, the final empty signed
        frame, then END_STREAM; no signature failures and nothing after sessionEnd."""
        rec, protocol = self.record, self._protocol
        reasons = [
            reason
            for ok, reason in (
                (protocol.prompt_ended, "no promptEnd"),
                (not protocol.blocks_open_at_prompt_end, "content blocks open at promptEnd"),
                (protocol.phase is Phase.SESSION_ENDED, "no sessionEnd"),
                (rec.client_end_frame, "no final empty signed frame"),
                (rec.client_end_stream, "no END_STREAM from the client"),
                (rec.signature_failures == 0, "signature failure"),
                (rec.events_after_session_end == 0, "events after sessionEnd"),
                (not rec.reset_by_client, "reset by the client"),
            )
            if not ok
        ]
        if protocol.blocks_open_at_prompt_end:
            reasons.append(f"open blocks: {list(protocol.blocks_open_at_prompt_end)}")
        return reasons

    async def _finish_writer(self, writer: asyncio.Task[None]) -> None:
        """Let the writer flush what is queued and end the response; reset if it cannot."""
        if self._stream.closed is None and self._output_open:
            # The client ended without sessionEnd: the service ends its side too.
            self._close_output()
            try:
                self._out.put_nowait(_End())
            except asyncio.QueueFull:
                self._stream.reset(h2.errors.ErrorCodes.NO_ERROR)
        if self._stream.closed is None and not self._writer_gone:
            done, _ = await asyncio.wait([writer], timeout=WRITER_FLUSH_TIMEOUT_S)
            if not done:
                self.record.notes.append("client stopped reading; RST_STREAM CANCEL")
                self._stream.reset(h2.errors.ErrorCodes.CANCEL)
        writer.cancel()

    def _close_output(self) -> None:
        self._output_open = False
        self._closed_at = _now()

    async def _stop_model(self) -> None:
        task = self._model_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def _writer(self) -> None:
        rec = self.record
        try:
            while True:
                item = await self._out.get()
                match item:
                    case _Frame(data=data, on_sent=on_sent):
                        await self._stream.send_data(data)
                        if on_sent is not None:
                            on_sent(_now())
                    case _End():
                        await self._stream.end()
                        rec.server_end_stream = True
                        return
                    case _Reset(code=code):
                        self._stream.reset(code)
                        rec.reset_by_server = True
                        return
                self._state.notify()
        except StreamClosedError:
            # Nothing can be sent any more, but the input loop may still be recording the
            # client's close and queueing replies: keep the queue moving so it never blocks
            # (this task is cancelled by _finish_writer).
            self._writer_gone = True
            self._state.notify()
            while True:
                await self._out.get()
        finally:
            self._state.notify()

    async def _fail(self, member: ExceptionMember, message: str) -> None:
        """Send an exception frame and end the response, like the service does."""
        if not self._output_open:
            return
        self._close_output()
        await self._stop_model()
        self.record.exceptions_sent.append((member, message))
        payload = json.dumps({"message": message}).encode()
        headers = (
            Header.string(":message-type", "exception"),
            Header.string(":exception-type", member),
            Header.string(":content-type", "application/json"),
        )
        await self._out.put(_Frame(encode_message(headers, payload)))
        await self._out.put(_End())

    async def _timers(self) -> None:
        limit = self._faults.connection_limit_s
        idle = self._faults.idle_timeout_s
        started = _now()
        while self._output_open and (limit is not None or idle is not None):
            now = _now()
            limit_at = started + limit if limit is not None else float("inf")
            idle_from = now if self._turn_active else self._last_activity
            idle_at = idle_from + idle if idle is not None else float("inf")
            if now >= limit_at:
                await self._fail("modelTimeoutException", MODEL_TIMEOUT_MESSAGE)
                return
            if now >= idle_at:
                await self._fail("validationException", IDLE_TIMEOUT_MESSAGE)
                return
            await asyncio.sleep(max(0.001, min(limit_at, idle_at) - now))

    # --- input -----------------------------------------------------------------------------

    async def _input_loop(self) -> None:
        rec = self.record
        decoder = MessageDecoder()
        while True:
            try:
                if self._output_open or self._closed_at is None:
                    data = await self._stream.receive()
                else:
                    remaining = self._closed_at + self._scenario.close_grace_s - _now()
                    async with asyncio.timeout(max(0.0, remaining)):
                        data = await self._stream.receive()
            except StreamClosedError as exc:
                if exc.reason == "reset by client":
                    rec.reset_by_client = True
                return
            except TimeoutError:
                rec.notes.append("client did not finish its side in time; RST_STREAM NO_ERROR")
                self._stream.reset(h2.errors.ErrorCodes.NO_ERROR)
                return
            if data is None:
                rec.client_end_stream = True
                return
            try:
                if not self._input_broken:
                    for message in decoder.feed(data):
                        if self._faults.read_delay_s > 0:
                            await asyncio.sleep(self._faults.read_delay_s)
                        await self._on_outer(message)
                        if self._input_broken:
                            break
            except EventStreamError as exc:
                self._input_broken = True
                rec.notes.append(f"bad outer framing: {exc}")
                await self._fail("validationException", f"Invalid event stream message: {exc}")
            finally:
                self._stream.ack(len(data))
            self._state.notify()

    async def _on_outer(self, message: Message) -> None:
        rec = self.record
        date = message.get_header(":date")
        signature = message.get(":chunk-signature")
        try:
            if (
                date is None
                or date.type is not HeaderType.TIMESTAMP
                or not isinstance(date.value, int)
            ):
                raise SignatureError("InvalidSignatureException", "Missing or bad :date header.")
            if not isinstance(signature, bytes) or len(signature) != 32:
                raise SignatureError(
                    "InvalidSignatureException", "Missing or bad :chunk-signature header."
                )
            self._chain.verify(date.value, signature, message.payload)
        except SignatureError as exc:
            self._input_broken = True
            rec.signature_failures += 1
            rec.signature_failure_reasons.append(exc.message)
            self._state.signature_failures += 1
            await self._fail("validationException", exc.message)
            return
        rec.signed_frames += 1
        if not message.payload:
            rec.client_end_frame = True
            return
        if rec.client_end_frame:
            rec.notes.append("event after the final empty frame")
        try:
            event = self._decode_inner(message.payload)
        except (EventStreamError, ValueError, KeyError, binascii.Error) as exc:
            self._input_broken = True
            await self._fail("validationException", f"Invalid input request: {exc}")
            return
        rec.events.append(event if self._state.keep_audio else _elide_audio(event))
        if self._protocol.phase is Phase.SESSION_ENDED:
            rec.events_after_session_end += 1
        try:
            actions = self._protocol.handle(event)
        except ProtocolViolation as exc:
            if self._output_open:
                await self._fail("validationException", exc.message)
            else:
                rec.notes.append(f"after the end: {exc.message}")
            return
        if not self._output_open:
            # Already answered (error or sessionEnd): track the client's close, do nothing.
            return
        for action in actions:
            await self._apply(action)

    @staticmethod
    def _decode_inner(payload: bytes) -> dict[str, Any]:
        inner = decode_message(payload)
        for name, want in (
            (":message-type", "event"),
            (":event-type", "chunk"),
            (":content-type", "application/json"),
        ):
            if inner.get(name) != want:
                raise ValueError(f"inner message header {name}={inner.get(name)!r}")
        wrapper = json.loads(inner.payload)
        if not isinstance(wrapper, dict) or not isinstance(wrapper.get("bytes"), str):
            raise ValueError('chunk payload must be {"bytes": <base64>}')
        event = json.loads(base64.b64decode(wrapper["bytes"], validate=True))
        if not isinstance(event, dict):
            raise ValueError("event JSON must be an object")
        return event

    async def _apply(self, action: RuleAction) -> None:
        rec = self.record
        now = _now()
        match action:
            case PromptStarted(output_sample_rate=rate, voice_id=voice):
                self._out_rate = rate
                self._voice = voice
            case AudioStarted(sample_rate=rate):
                sc = self._scenario
                self._endpointer = EnergyEndpointer(
                    sample_rate=rate,
                    threshold=sc.speech_rms_threshold,
                    window_ms=sc.analysis_window_ms,
                    start_ms=sc.barge_in_speech_ms,
                    min_speech_ms=sc.min_speech_ms,
                    min_silence_ms=sc.min_silence_ms,
                )
            case AudioChunk(pcm=pcm):
                rec.audio_frames += 1
                rec.audio_bytes += len(pcm)
                if self._state.keep_audio:
                    rec.audio_in += pcm
                if self._endpointer is None:
                    return
                for detection in self._endpointer.feed(pcm):
                    self._last_activity = now
                    if detection.kind is SpeechEvent.STARTED:
                        self._on_speech_started(now)
                    else:
                        self._trigger(_TurnTrigger("audio", "", now, detection.voiced_ms))
                if self._endpointer.in_speech:
                    self._last_activity = now
            case AudioEnded():
                if self._endpointer is not None:
                    self._endpointer.reset()
            case UserText(text=text):
                self._last_activity = now
                self._trigger(_TurnTrigger("text", text, now))
            case ToolResult(tool_use_id=tool_use_id, content=content):
                self._last_activity = now
                waiter = self._tool_waiters.get(tool_use_id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(content)
            case PromptEnded():
                await self._stop_model()
                if rec.completion_started and self._output_open:
                    await self._emit("completionEnd", {**self._ids(), "stopReason": "END_TURN"})
            case SessionEnded():
                await self._stop_model()
                if self._output_open:
                    self._close_output()
                    await self._out.put(_End())

    def _trigger(self, trigger: _Trigger) -> None:
        try:
            self._triggers.put_nowait(trigger)
        except asyncio.QueueFull:
            self.record.notes.append(f"trigger dropped (queue full): {trigger!r}")

    def _on_speech_started(self, now: float) -> None:
        playout = self._playout
        if playout is None or playout.interrupted or not playout.playing(now):
            return
        playout.interrupted = True
        playout.record.interrupted = True
        if playout.done_sending:
            self._trigger(_InterruptTrigger(playout))
        else:
            playout.interrupt.set()

    # --- output ----------------------------------------------------------------------------

    def _ids(self) -> dict[str, Any]:
        return {
            "sessionId": self._session_id,
            "promptName": self._protocol.prompt_name,
            "completionId": self._completion_id,
        }

    async def _emit(
        self, name: str, body: dict[str, Any], on_sent: Callable[[float], None] | None = None
    ) -> None:
        if not self._output_open:
            raise _OutputClosed
        event = {"event": {name: body}}
        await self._out.put(_Frame(self._encode_event(event), on_sent))
        self.record.sent_events.append(event if self._state.keep_audio else _elide_audio(event))

    @staticmethod
    def _encode_event(event: dict[str, Any]) -> bytes:
        raw = json.dumps(event, separators=(",", ":")).encode()
        payload = json.dumps({"bytes": base64.b64encode(raw).decode()}).encode()
        return encode_message(_EVENT_HEADERS, payload)

    async def _usage(self, speech_in: int, text_in: int, speech_out: int, text_out: int) -> None:
        delta_in = {"speechTokens": speech_in, "textTokens": text_in}
        delta_out = {"speechTokens": speech_out, "textTokens": text_out}
        for key in delta_in:
            self._usage_in[key] += delta_in[key]
            self._usage_out[key] += delta_out[key]
        total_in = sum(self._usage_in.values())
        total_out = sum(self._usage_out.values())
        await self._emit(
            "usageEvent",
            {
                **self._ids(),
                "details": {
                    "delta": {"input": delta_in, "output": delta_out},
                    "total": {"input": dict(self._usage_in), "output": dict(self._usage_out)},
                },
                "totalInputTokens": total_in,
                "totalOutputTokens": total_out,
                "totalTokens": total_in + total_out,
            },
        )

    async def _text_block(
        self,
        role: str,
        stage: str,
        texts: list[str],
        stop: str,
        on_sent: Callable[[float], None] | None = None,
    ) -> None:
        content_id = str(uuid.uuid4())
        await self._emit(
            "contentStart",
            {
                **self._ids(),
                "contentId": content_id,
                "type": "TEXT",
                "role": role,
                "additionalModelFields": json.dumps({"generationStage": stage}),
                "textOutputConfiguration": {"mediaType": "text/plain"},
            },
            on_sent,
        )
        for text in texts:
            await self._emit(
                "textOutput",
                {**self._ids(), "contentId": content_id, "content": text, "role": role},
            )
        await self._emit(
            "contentEnd",
            {**self._ids(), "contentId": content_id, "stopReason": stop, "type": "TEXT"},
        )

    # --- the model -------------------------------------------------------------------------

    async def _model_loop(self) -> None:
        try:
            while True:
                trigger = await self._triggers.get()
                match trigger:
                    case _InterruptTrigger(playout=playout):
                        await self._text_block(
                            "ASSISTANT", "FINAL", [INTERRUPTED_MARKER], "INTERRUPTED"
                        )
                        playout.record.end = "INTERRUPTED"
                    case _TurnTrigger():
                        self._turn_active = True
                        try:
                            await self._run_turn(trigger)
                        finally:
                            self._turn_active = False
                            self._last_activity = _now()
                self._state.notify()
        except _OutputClosed:
            return

    async def _run_turn(self, trigger: _TurnTrigger) -> None:
        number = self._state.next_turn()
        turn = self._scenario.turn(number - 1)
        transcript = trigger.text if trigger.kind == "text" else turn.user_text
        rec = TurnRecord(
            number=number,
            trigger=trigger.kind,
            transcript=transcript,
            reply_text=turn.reply_text,
            triggered_at=trigger.at,
        )
        self.record.turns.append(rec)
        if self._scenario.response_delay_s > 0:
            await asyncio.sleep(self._scenario.response_delay_s)
        if not self.record.completion_started:
            self.record.completion_started = True
            await self._emit("completionStart", self._ids())

        def first_event(at: float) -> None:
            rec.first_event_at = at

        await self._text_block("USER", "FINAL", [transcript], "END_TURN", first_event)
        text_in = 0 if trigger.kind == "audio" else _tokens(transcript)
        await self._usage(int(trigger.speech_ms) // 40, text_in, 0, 0)
        reply = turn.reply_text
        if turn.tool_call is not None:
            reply = await self._tool_round(turn.tool_call, rec, reply)
        rec.reply_text = reply
        await self._text_block("ASSISTANT", "SPECULATIVE", [reply], "PARTIAL_TURN")
        playout = await self._audio_block(turn, rec)
        # From here on a barge-in gets its own marker block (after this reply's END_TURN).
        interrupted = playout.interrupted
        playout.done_sending = True
        stop = "INTERRUPTED" if interrupted else "END_TURN"
        texts = [reply, INTERRUPTED_MARKER] if interrupted else [reply]
        await self._text_block("ASSISTANT", "FINAL", texts, stop)
        if rec.end is None:
            rec.end = stop
        await self._usage(0, 0, int(rec.audio_ms) // 40, _tokens(reply))

    async def _tool_round(self, spec: ToolCallSpec, rec: TurnRecord, reply: str) -> str:
        tool_use_id = spec.tool_use_id or str(uuid.uuid4())
        content = json.dumps(dict(spec.arguments))
        if spec.double_encode:
            content = json.dumps(content)
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tool_waiters[tool_use_id] = waiter
        self._protocol.outstanding_tool_uses.add(tool_use_id)
        rec.tool_use_id = tool_use_id
        content_id = str(uuid.uuid4())
        await self._emit(
            "contentStart",
            {
                **self._ids(),
                "contentId": content_id,
                "type": "TOOL",
                "role": "TOOL",
                "toolUseOutputConfiguration": {"mediaType": "application/json"},
            },
        )
        await self._emit(
            "toolUse",
            {
                **self._ids(),
                "contentId": content_id,
                "content": content,
                "toolName": spec.name,
                "toolUseId": tool_use_id,
            },
        )
        await self._emit(
            "contentEnd",
            {**self._ids(), "contentId": content_id, "stopReason": "TOOL_USE", "type": "TOOL"},
        )
        try:
            result = await waiter
        finally:
            self._tool_waiters.pop(tool_use_id, None)
        rec.tool_result = result
        if "{tool_result}" in reply:
            return reply.replace("{tool_result}", result)
        return f"{reply} {result}"

    async def _audio_block(self, turn: Turn, rec: TurnRecord) -> _Playout:
        sc = self._scenario
        pcm = sine_pcm16(turn.reply_audio_ms, turn.tone_hz, self._out_rate)
        chunk_bytes = max(2, (self._out_rate * sc.reply_chunk_ms // 1000) * 2)
        chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
        playout = _Playout(record=rec, duration_s=len(pcm) / (2 * self._out_rate))
        self._playout = playout
        content_id = str(uuid.uuid4())
        await self._emit(
            "contentStart",
            {
                **self._ids(),
                "contentId": content_id,
                "type": "AUDIO",
                "role": "ASSISTANT",
                "audioOutputConfiguration": {
                    "mediaType": "audio/lpcm",
                    "sampleRateHertz": self._out_rate,
                    "sampleSizeBits": 16,
                    "channelCount": 1,
                    "voiceId": self._voice,
                    "encoding": "base64",
                    "audioType": "SPEECH",
                },
            },
        )

        def first_audio(at: float) -> None:
            playout.started_at = at
            rec.first_audio_at = at

        chunk_s = sc.reply_chunk_ms / 1000.0
        start = _now()
        for index, chunk in enumerate(chunks):
            if sc.reply_pace > 0:
                delay = start + index * chunk_s / sc.reply_pace - _now()
                if delay > 0:
                    try:
                        async with asyncio.timeout(delay):
                            await playout.interrupt.wait()
                    except TimeoutError:
                        pass
            if playout.interrupted:
                break
            if index == len(chunks) // 2:
                start += await self._mid_reply_faults(rec, chunk, content_id)
            await self._emit(
                "audioOutput",
                {
                    **self._ids(),
                    "contentId": content_id,
                    "content": base64.b64encode(chunk).decode(),
                },
                first_audio if index == 0 else None,
            )
            rec.audio_bytes_sent += len(chunk)
            rec.audio_ms = 1000.0 * rec.audio_bytes_sent / (2 * self._out_rate)
        rec.audio_done_at = _now()
        stop = "INTERRUPTED" if playout.interrupted else "END_TURN"
        await self._emit(
            "contentEnd",
            {**self._ids(), "contentId": content_id, "stopReason": stop, "type": "AUDIO"},
        )
        return playout

    async def _mid_reply_faults(self, rec: TurnRecord, chunk: bytes, content_id: str) -> float:
        """Faults that strike halfway through a reply; returns seconds stalled."""
        faults, state, number = self._faults, self._state, rec.number
        if state.take_fault("reset", faults.reset_on_turn, number):
            rec.end = "RESET"
            self._close_output()
            await self._out.put(_Reset(h2.errors.ErrorCodes.INTERNAL_ERROR))
            raise _OutputClosed
        frame = self._encode_event(
            {
                "event": {
                    "audioOutput": {
                        **self._ids(),
                        "contentId": content_id,
                        "content": base64.b64encode(chunk).decode(),
                    }
                }
            }
        )
        if state.take_fault("bad_crc", faults.bad_crc_on_turn, number):
            rec.end = "BAD_CRC"
            self._close_output()
            corrupted = frame[:-1] + bytes([frame[-1] ^ 0xFF])
            await self._out.put(_Frame(corrupted))
            await self._out.put(_End())
            raise _OutputClosed
        if state.take_fault("truncated_frame", faults.truncated_frame_on_turn, number):
            rec.end = "TRUNCATED"
            self._close_output()
            await self._out.put(_Frame(frame[: len(frame) // 2]))
            await self._out.put(_End())
            raise _OutputClosed
        if state.take_fault("internal_error", faults.internal_error_on_turn, number):
            rec.end = "INTERNAL_ERROR"
            await self._fail(faults.internal_error_type, faults.internal_error_message)
            raise _OutputClosed
        if state.take_fault("stall", faults.stall_on_turn, number):
            await asyncio.sleep(faults.stall_s)
            return faults.stall_s
        return 0.0


def _elide_audio(event: dict[str, Any]) -> dict[str, Any]:
    body = event.get("event")
    if isinstance(body, dict) and len(body) == 1:
        name, inner = next(iter(body.items()))
        if name in ("audioInput", "audioOutput") and isinstance(inner, dict):
            content = inner.get("content")
            size = len(content) if isinstance(content, str) else 0
            return {"event": {name: {**inner, "content": f"<{size} base64 chars>"}}}
    return event


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0
