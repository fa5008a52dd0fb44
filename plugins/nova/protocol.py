"""Nova Sonic wire events, sans-I/O.

`InputBuilder` makes every client event (JSON bytes) in the documented order;
`OutputParser` turns each server event's JSON into SessionEvents and a few notes
(usage, completion start/end) with a small state machine over content blocks, roles,
generation stages, stop reasons and turn ids. No sockets, no asyncio, no clocks.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.s2s import EventType, ProviderError, SessionEvent, ToolCall, ToolDefinition

log = logging.getLogger(__name__)

INPUT_SAMPLE_RATE = 16000
OUTPUT_SAMPLE_RATE = 24000
_TEXT_PLAIN = {"mediaType": "text/plain"}

# ---------------------------------------------------------------------------- input


@dataclass(frozen=True, slots=True)
class InferenceConfig:
    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _new_id() -> str:
    return str(uuid.uuid4())


def tool_spec(tool: ToolDefinition) -> dict[str, Any]:
    """A toolSpec; Nova wants the JSON Schema as a JSON *string*."""
    return {
        "toolSpec": {
            "name": tool.name,
            "description": tool.description,
            "inputSchema": {"json": json.dumps(tool.input_schema, separators=(",", ":"))},
        }
    }


def tool_choice(choice: str) -> dict[str, Any]:
    if choice in ("auto", "any"):
        return {choice: {}}
    return {"tool": {"name": choice}}


def tool_result_payload(content: str, *, is_error: bool) -> str:
    """A toolResult content the service accepts: always a JSON object string.

    Valid JSON objects pass through (errors get an "error" key if they lack one); anything
    else is wrapped as {"result": …} or {"error": …}.
    """
    try:
        value: Any = json.loads(content)
    except (ValueError, TypeError):
        value = content
    key = "error" if is_error else "result"
    if isinstance(value, dict):
        if is_error and "error" not in value:
            value = {"error": value}
    else:
        value = {key: value}
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class InputBuilder:
    """Client events for one prompt. Content names come from `new_id` (uuid4 by default)."""

    def __init__(self, prompt_name: str | None = None, *, new_id: Callable[[], str] = _new_id):
        self._new_id = new_id
        self.prompt_name = prompt_name or new_id()
        self.audio_content_name: str | None = None
        self._audio_prefix = b""
        self._audio_suffix = b'"}}}'

    def session_start(self, inference: InferenceConfig, *, endpointing: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "inferenceConfiguration": {
                "maxTokens": inference.max_tokens,
                "topP": inference.top_p,
                "temperature": inference.temperature,
            }
        }
        if endpointing is not None:
            body["turnDetectionConfiguration"] = {"endpointingSensitivity": endpointing}
        return encode({"event": {"sessionStart": body}})

    def prompt_start(
        self,
        *,
        voice: str,
        tools: Iterable[ToolDefinition] = (),
        choice: str | None = None,
        sample_rate: int = OUTPUT_SAMPLE_RATE,
    ) -> bytes:
        body: dict[str, Any] = {
            "promptName": self.prompt_name,
            "textOutputConfiguration": dict(_TEXT_PLAIN),
            "audioOutputConfiguration": {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": sample_rate,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "voiceId": voice,
                "encoding": "base64",
                "audioType": "SPEECH",
            },
            "toolUseOutputConfiguration": {"mediaType": "application/json"},
        }
        specs = [tool_spec(t) for t in tools]
        if specs:
            config: dict[str, Any] = {"tools": specs}
            if choice is not None:
                config["toolChoice"] = tool_choice(choice)
            body["toolConfiguration"] = config
        return encode({"event": {"promptStart": body}})

    def text_block(self, role: str, text: str, *, interactive: bool) -> list[bytes]:
        """contentStart / textInput / contentEnd for SYSTEM, USER or ASSISTANT text."""
        name = self._new_id()
        return [
            self._content_start(
                name,
                type="TEXT",
                interactive=interactive,
                role=role,
                textInputConfiguration=dict(_TEXT_PLAIN),
            ),
            self._content("textInput", name, text),
            self._content_end(name),
        ]

    def audio_start(self, *, sample_rate: int = INPUT_SAMPLE_RATE) -> bytes:
        """Open the one long USER audio block; later audio_input() calls belong to it."""
        name = self._new_id()
        self.audio_content_name = name
        self._audio_prefix = (
            b'{"event":{"audioInput":{"promptName":'
            + json.dumps(self.prompt_name).encode()
            + b',"contentName":'
            + json.dumps(name).encode()
            + b',"content":"'
        )
        return self._content_start(
            name,
            type="AUDIO",
            interactive=True,
            role="USER",
            audioInputConfiguration={
                "mediaType": "audio/lpcm",
                "sampleRateHertz": sample_rate,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "audioType": "SPEECH",
                "encoding": "base64",
            },
        )

    def audio_input(self, pcm: bytes) -> bytes:
        """One audioInput event for the audio block (the hot path: a byte template).

        Frames may be encoded after audio_end() was built (a writer drains its queue in
        order), so this only needs the block to have been opened.
        """
        if not self._audio_prefix:
            raise RuntimeError("audio_input before audio_start")
        return self._audio_prefix + base64.b64encode(pcm) + self._audio_suffix

    def audio_end(self) -> bytes:
        if self.audio_content_name is None:
            raise RuntimeError("audio_end without an open audio block")
        name, self.audio_content_name = self.audio_content_name, None
        return self._content_end(name)

    def tool_result_block(self, tool_use_id: str, content: str) -> list[bytes]:
        """contentStart (TOOL) / toolResult / contentEnd answering `tool_use_id`."""
        name = self._new_id()
        return [
            self._content_start(
                name,
                interactive=False,
                type="TOOL",
                role="TOOL",
                toolResultInputConfiguration={
                    "toolUseId": tool_use_id,
                    "type": "TEXT",
                    "textInputConfiguration": dict(_TEXT_PLAIN),
                },
            ),
            self._content("toolResult", name, content),
            self._content_end(name),
        ]

    def prompt_end(self) -> bytes:
        return encode({"event": {"promptEnd": {"promptName": self.prompt_name}}})

    @staticmethod
    def session_end() -> bytes:
        return encode({"event": {"sessionEnd": {}}})

    def _content_start(self, name: str, **fields: Any) -> bytes:
        body = {"promptName": self.prompt_name, "contentName": name, **fields}
        return encode({"event": {"contentStart": body}})

    def _content(self, kind: str, name: str, content: str) -> bytes:
        """textInput / toolResult: the block's one payload event."""
        body = {"promptName": self.prompt_name, "contentName": name, "content": content}
        return encode({"event": {kind: body}})

    def _content_end(self, name: str) -> bytes:
        return encode(
            {"event": {"contentEnd": {"promptName": self.prompt_name, "contentName": name}}}
        )


# ---------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one usageEvent (deltas since the previous one)."""

    input_speech: int = 0
    input_text: int = 0
    output_speech: int = 0
    output_text: int = 0
    total_input: int = 0
    total_output: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class CompletionStarted:
    completion_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class CompletionEnded:
    stop_reason: str


Output = SessionEvent | Usage | CompletionStarted | CompletionEnded


@dataclass(slots=True)
class _Turn:
    id: str
    ended: bool = False
    interrupted: bool = False


@dataclass(slots=True)
class _Block:
    type: str
    role: str
    stage: str  # "SPECULATIVE" | "FINAL" ("" when the service gave none)
    turn: _Turn | None = None
    user_turn: str | None = None
    tool_ids: list[str] = field(default_factory=list)


def _counter(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers)}"


def _bad(message: str) -> SessionEvent:
    return SessionEvent(
        type=EventType.ERROR,
        error=ProviderError(message, code="bad_event", recoverable=True),
    )


def _stage(fields: Any) -> str:
    """generationStage from additionalModelFields (a JSON string, sometimes a dict)."""
    if isinstance(fields, str) and fields:
        try:
            fields = json.loads(fields)
        except ValueError:
            return ""
    if isinstance(fields, dict):
        stage = fields.get("generationStage", "")
        return stage if isinstance(stage, str) else ""
    return ""


def is_interrupted_marker(content: str) -> bool:
    """The `{ "interrupted" : true }` text Nova sends in place of a barged-in reply."""
    text = content.strip()
    if not (text.startswith("{") and "interrupted" in text):
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("interrupted") is True


def tool_arguments(content: Any) -> str:
    """The raw JSON arguments string; a double-encoded string is decoded once."""
    if isinstance(content, dict | list):
        return json.dumps(content, separators=(",", ":"))
    if not isinstance(content, str) or not content.strip():
        return "{}"
    try:
        inner = json.loads(content)
    except ValueError:
        return content
    if isinstance(inner, str):
        try:
            json.loads(inner)
        except ValueError:
            return content
        return inner
    return content


class OutputParser:
    """Server event JSON → SessionEvents, for one stream.

    Turn rules: an assistant turn starts at the first ASSISTANT (or TOOL) content block
    after the previous turn ended; it ends at the first END_TURN or INTERRUPTED stop
    reason (one TURN_END). FINAL text blocks that arrive after the end (Nova sends them
    after the audio) still belong to that turn, and so does a late interrupted marker,
    which yields one INTERRUPTED per turn.
    """

    def __init__(
        self,
        *,
        turn_ids: Callable[[], str] | None = None,
        user_turn_ids: Callable[[], str] | None = None,
    ) -> None:
        self._turn_ids = turn_ids or _counter("turn")
        self._user_turn_ids = user_turn_ids or _counter("user")
        self._blocks: dict[str, _Block] = {}
        self._turn: _Turn | None = None  # the open (not ended) turn
        self._last: _Turn | None = None  # the latest turn, open or ended
        self.completion_id: str | None = None
        self.session_id: str | None = None
        self.stop_reason: str | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Output]]] = {
            "completionStart": self._completion_start,
            "contentStart": self._content_start,
            "textOutput": self._text_output,
            "audioOutput": self._audio_output,
            "toolUse": self._tool_use,
            "contentEnd": self._content_end,
            "usageEvent": self._usage,
            "completionEnd": self._completion_end,
        }

    @property
    def turn_open(self) -> bool:
        return self._turn is not None

    @property
    def current_turn_id(self) -> str | None:
        return self._turn.id if self._turn else None

    @property
    def last_turn_id(self) -> str | None:
        return self._last.id if self._last else None

    def feed(self, data: bytes | str) -> list[Output]:
        """Parse one event's JSON. Never raises: bad input becomes an ERROR event."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            return [_bad(f"malformed Nova event JSON: {exc}")]
        event = doc.get("event") if isinstance(doc, dict) else None
        if not isinstance(event, dict) or not event:
            return [_bad("Nova event without an 'event' object")]
        outputs: list[Output] = []
        for name, body in event.items():
            handler = self._handlers.get(name)
            if handler is None:
                log.debug("ignoring unknown Nova event %r", name)
                continue
            if not isinstance(body, dict):
                outputs.append(_bad(f"Nova {name} event body is not an object"))
                continue
            try:
                outputs.extend(handler(body))
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                outputs.append(_bad(f"bad Nova {name} event: {type(exc).__name__}: {exc}"))
        return outputs

    def end_turn(self) -> list[SessionEvent]:
        """Close the open turn (the stream died or is being replaced mid-turn)."""
        turn = self._turn
        if turn is None:
            return []
        turn.ended = True
        self._turn = None
        return [SessionEvent(type=EventType.TURN_END, turn_id=turn.id)]

    # -- handlers

    def _completion_start(self, body: dict[str, Any]) -> list[Output]:
        self.completion_id = str(body.get("completionId", ""))
        self.session_id = str(body.get("sessionId", ""))
        return [CompletionStarted(self.completion_id, self.session_id)]

    def _new_turn(self) -> _Turn:
        turn = _Turn(self._turn_ids())
        self._turn = self._last = turn
        return turn

    def _content_start(self, body: dict[str, Any]) -> list[Output]:
        content_id = str(body["contentId"])
        ctype = str(body.get("type", "")).upper()
        role = str(body.get("role", "")).upper()
        block = _Block(ctype, role, _stage(body.get("additionalModelFields")))
        if role == "USER":
            block.user_turn = self._user_turn_ids()
        elif role in ("ASSISTANT", "TOOL") or ctype == "TOOL":
            if self._turn is not None:
                block.turn = self._turn
            elif ctype == "TEXT" and block.stage == "FINAL" and self._last is not None:
                # The final transcript of a reply whose audio already ended.
                block.turn = self._last
            else:
                block.turn = self._new_turn()
        self._blocks[content_id] = block
        return []

    def _block(self, body: dict[str, Any], default_type: str) -> _Block:
        content_id = str(body.get("contentId", ""))
        block = self._blocks.get(content_id)
        if block is not None:
            return block
        # Content without a contentStart: attribute it from the event itself.
        role = str(body.get("role", "ASSISTANT")).upper()
        log.debug("Nova %s for unknown content %r", default_type, content_id)
        block = _Block(default_type, role, "")
        if role == "USER":
            block.user_turn = self._user_turn_ids()
        else:
            block.turn = self._turn or self._new_turn()
        self._blocks[content_id] = block
        return block

    def _interrupt(self, turn: _Turn) -> list[Output]:
        if turn.interrupted:
            return []
        turn.interrupted = True
        return [SessionEvent(type=EventType.INTERRUPTED, turn_id=turn.id)]

    def _finish(self, turn: _Turn) -> list[Output]:
        if turn.ended:
            return []
        turn.ended = True
        if self._turn is turn:
            self._turn = None
        return [SessionEvent(type=EventType.TURN_END, turn_id=turn.id)]

    def _text_output(self, body: dict[str, Any]) -> list[Output]:
        content = body["content"]
        if not isinstance(content, str):
            raise TypeError("textOutput content is not a string")
        block = self._block(body, "TEXT")
        if block.role == "USER":
            return [
                SessionEvent(
                    type=EventType.TRANSCRIPT,
                    text=content,
                    final=block.stage != "SPECULATIVE",
                    turn_id=block.user_turn,
                )
            ]
        turn = block.turn or self._last or self._new_turn()
        if is_interrupted_marker(content):
            return self._interrupt(turn)
        return [
            SessionEvent(
                type=EventType.TEXT_OUTPUT,
                text=content,
                final=block.stage == "FINAL",
                turn_id=turn.id,
            )
        ]

    def _audio_output(self, body: dict[str, Any]) -> list[Output]:
        content = body["content"]
        if not isinstance(content, str):
            raise TypeError("audioOutput content is not a string")
        block = self._block(body, "AUDIO")
        turn = block.turn or self._turn or self._new_turn()
        audio = base64.b64decode(content, validate=True)
        return [SessionEvent(type=EventType.AUDIO_OUTPUT, audio=audio, turn_id=turn.id)]

    def _tool_use(self, body: dict[str, Any]) -> list[Output]:
        tool_use_id = body["toolUseId"]
        name = body["toolName"]
        if not isinstance(tool_use_id, str) or not tool_use_id:
            raise ValueError("toolUse without a toolUseId")
        if not isinstance(name, str) or not name:
            raise ValueError("toolUse without a toolName")
        block = self._block(body, "TOOL")
        turn = block.turn or self._turn or self._new_turn()
        block.tool_ids.append(tool_use_id)
        call = ToolCall(id=tool_use_id, name=name, arguments=tool_arguments(body.get("content")))
        return [SessionEvent(type=EventType.TOOL_CALL, tool_call=call, turn_id=turn.id)]

    def _content_end(self, body: dict[str, Any]) -> list[Output]:
        block = self._blocks.pop(str(body.get("contentId", "")), None)
        reason = str(body.get("stopReason", "")).upper()
        if block is None or block.turn is None:
            return []
        turn = block.turn
        if reason == "INTERRUPTED":
            return [*self._interrupt(turn), *self._finish(turn)]
        if reason == "END_TURN":
            return self._finish(turn)
        return []

    def _usage(self, body: dict[str, Any]) -> list[Output]:
        details = body.get("details") or {}
        delta = (details.get("delta") or {}) if isinstance(details, dict) else {}
        delta_in = delta.get("input") or {}
        delta_out = delta.get("output") or {}
        return [
            Usage(
                input_speech=int(delta_in.get("speechTokens", 0)),
                input_text=int(delta_in.get("textTokens", 0)),
                output_speech=int(delta_out.get("speechTokens", 0)),
                output_text=int(delta_out.get("textTokens", 0)),
                total_input=int(body.get("totalInputTokens", 0)),
                total_output=int(body.get("totalOutputTokens", 0)),
                total=int(body.get("totalTokens", 0)),
            )
        ]

    def _completion_end(self, body: dict[str, Any]) -> list[Output]:
        self.stop_reason = str(body.get("stopReason", ""))
        return [*self.end_turn(), CompletionEnded(self.stop_reason)]
