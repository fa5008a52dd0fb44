"""The input-side protocol rules of Nova Sonic, as a sans-I/O state machine.

`InputProtocol.handle(event)` checks one client event against what the service accepts
and returns what it means for the model (actions), or raises `ProtocolViolation` with the
message the emulator sends back as a validationException. Rules come from the Nova Sonic
docs and samples (see /work/shared/protocols/nova_sonic.md); messages the docs do not
quote are worded by us.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .scenario import Scenario, is_nova_2

HISTORY_BEFORE_AUDIO = "Chat history should be sent completely before streaming audio."
OUTPUT_SAMPLE_RATES = frozenset({8000, 16000, 24000})
INPUT_SAMPLE_RATES = frozenset({8000, 16000})
SENSITIVITIES = frozenset({"HIGH", "MEDIUM", "LOW"})


class ProtocolViolation(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Phase(Enum):
    NEW = "new"
    SESSION = "session"
    PROMPT = "prompt"
    PROMPT_ENDED = "prompt_ended"
    SESSION_ENDED = "session_ended"


# --- actions: what a valid event means for the model ------------------------------------


@dataclass(frozen=True)
class PromptStarted:
    output_sample_rate: int
    voice_id: str
    tool_names: tuple[str, ...]


@dataclass(frozen=True)
class AudioStarted:
    sample_rate: int


@dataclass(frozen=True)
class AudioChunk:
    pcm: bytes


@dataclass(frozen=True)
class AudioEnded:
    pass


@dataclass(frozen=True)
class UserText:
    text: str


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    content: str


@dataclass(frozen=True)
class PromptEnded:
    open_blocks: tuple[str, ...]


@dataclass(frozen=True)
class SessionEnded:
    clean: bool


Action = (
    PromptStarted
    | AudioStarted
    | AudioChunk
    | AudioEnded
    | UserText
    | ToolResult
    | PromptEnded
    | SessionEnded
)


@dataclass
class _Block:
    name: str
    type: str
    role: str
    interactive: bool
    tool_use_id: str | None = None
    text: list[str] = field(default_factory=list)
    tool_content: str | None = None

    @property
    def is_history(self) -> bool:
        return self.type == "TEXT" and not self.interactive and self.role in ("USER", "ASSISTANT")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolViolation(f"Invalid input request: {what} must be an object.")
    return value


def _str(body: Mapping[str, Any], key: str, what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolViolation(f"Invalid input request: {what}.{key} must be a non-empty string.")
    return value


def _check_fields(body: Mapping[str, Any], expected: Mapping[str, object], what: str) -> None:
    for key, want in expected.items():
        if body.get(key) != want:
            raise ProtocolViolation(
                f"Invalid input request: {what}.{key} must be {want!r}, got {body.get(key)!r}."
            )


class InputProtocol:
    def __init__(self, model_id: str, scenario: Scenario) -> None:
        self.model_id = model_id
        self.nova_2 = is_nova_2(model_id)
        self.voices = scenario.voices.get(model_id, frozenset())
        self.scenario = scenario
        self.phase = Phase.NEW
        self.prompt_name: str | None = None
        self.tool_names: tuple[str, ...] = ()
        self.blocks: dict[str, _Block] = {}
        self.used_names: set[str] = set()
        self.content_started = 0
        self.audio_started = False
        self.history_roles: list[str] = []
        self.history_bytes = 0
        # toolUseIds the model has sent and not yet seen a result for.
        self.outstanding_tool_uses: set[str] = set()
        self.prompt_closed_cleanly = False
        self.blocks_open_at_prompt_end: tuple[str, ...] = ()
        self.prompt_ended = False

    # ------------------------------------------------------------------------------------

    def handle(self, event: Any) -> list[Action]:
        if not isinstance(event, dict) or set(event) != {"event"}:
            raise ProtocolViolation('Invalid input request: expected {"event": {<name>: {...}}}.')
        inner = _obj(event["event"], "event")
        if len(inner) != 1:
            raise ProtocolViolation("Invalid input request: an event must hold exactly one member.")
        name, body = next(iter(inner.items()))
        if self.phase is Phase.SESSION_ENDED:
            raise ProtocolViolation(f"Invalid input request: {name} received after sessionEnd.")
        body = _obj(body, name)
        match name:
            case "sessionStart":
                return self._session_start(body)
            case "promptStart":
                return self._prompt_start(body)
            case "contentStart":
                return self._content_start(body)
            case "textInput" | "audioInput" | "toolResult":
                return self._content_input(name, body)
            case "contentEnd":
                return self._content_end(body)
            case "promptEnd":
                return self._prompt_end(body)
            case "sessionEnd":
                return self._session_end()
            case _:
                raise ProtocolViolation(f"Invalid input request: unknown event {name!r}.")

    # --- session and prompt --------------------------------------------------------------

    def _session_start(self, body: dict[str, Any]) -> list[Action]:
        if self.phase is not Phase.NEW:
            raise ProtocolViolation("Invalid input request: sessionStart must be sent once, first.")
        if "endpointingSensitivity" in body:
            raise ProtocolViolation(
                "Invalid input request: unknown field sessionStart.endpointingSensitivity; "
                "use turnDetectionConfiguration.endpointingSensitivity."
            )
        unknown = set(body) - {"inferenceConfiguration", "turnDetectionConfiguration"}
        if unknown:
            raise ProtocolViolation(
                f"Invalid input request: unknown sessionStart fields {sorted(unknown)}."
            )
        inference = _obj(body.get("inferenceConfiguration", {}), "inferenceConfiguration")
        max_tokens = inference.get("maxTokens")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise ProtocolViolation("Invalid input request: maxTokens must be a positive integer.")
        for key in ("topP", "temperature"):
            value = inference.get(key)
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1
            ):
                raise ProtocolViolation(f"Invalid input request: {key} must be between 0 and 1.")
        if "turnDetectionConfiguration" in body:
            if not self.nova_2:
                raise ProtocolViolation(
                    "Invalid input request: turnDetectionConfiguration is not supported by "
                    f"{self.model_id}."
                )
            turn = _obj(body["turnDetectionConfiguration"], "turnDetectionConfiguration")
            if turn.get("endpointingSensitivity") not in SENSITIVITIES:
                raise ProtocolViolation(
                    "Invalid input request: endpointingSensitivity must be HIGH, MEDIUM or LOW."
                )
        self.phase = Phase.SESSION
        return []

    def _prompt_start(self, body: dict[str, Any]) -> list[Action]:
        if self.phase is not Phase.SESSION:
            raise ProtocolViolation(
                "Invalid input request: promptStart must follow sessionStart, once."
            )
        prompt_name = _str(body, "promptName", "promptStart")
        text_cfg = body.get("textOutputConfiguration")
        if text_cfg is not None:
            _check_fields(
                _obj(text_cfg, "textOutputConfiguration"),
                {"mediaType": "text/plain"},
                "textOutputConfiguration",
            )
        audio_cfg = _obj(body.get("audioOutputConfiguration"), "audioOutputConfiguration")
        _check_fields(
            audio_cfg,
            {
                "mediaType": "audio/lpcm",
                "sampleSizeBits": 16,
                "channelCount": 1,
                "encoding": "base64",
                "audioType": "SPEECH",
            },
            "audioOutputConfiguration",
        )
        rate = audio_cfg.get("sampleRateHertz")
        if rate not in OUTPUT_SAMPLE_RATES:
            raise ProtocolViolation(
                f"Invalid input request: sampleRateHertz {rate!r} must be 8000, 16000 or 24000."
            )
        voice = audio_cfg.get("voiceId")
        if not isinstance(voice, str) or voice not in self.voices:
            raise ProtocolViolation(
                f"Invalid input request: voiceId {voice!r} is not supported by {self.model_id}."
            )
        tool_use_cfg = body.get("toolUseOutputConfiguration")
        if tool_use_cfg is not None:
            _check_fields(
                _obj(tool_use_cfg, "toolUseOutputConfiguration"),
                {"mediaType": "application/json"},
                "toolUseOutputConfiguration",
            )
        self.tool_names = self._tools(body.get("toolConfiguration"))
        self.prompt_name = prompt_name
        self.phase = Phase.PROMPT
        return [PromptStarted(int(rate), voice, self.tool_names)]

    def _tools(self, config: Any) -> tuple[str, ...]:
        if config is None:
            return ()
        config = _obj(config, "toolConfiguration")
        tools = config.get("tools", [])
        if not isinstance(tools, list):
            raise ProtocolViolation(
                "Invalid input request: toolConfiguration.tools must be a list."
            )
        names: list[str] = []
        for tool in tools:
            spec = _obj(_obj(tool, "tool").get("toolSpec"), "toolSpec")
            name = _str(spec, "name", "toolSpec")
            if name in names:
                raise ProtocolViolation(f"Invalid input request: duplicate tool name {name!r}.")
            if not isinstance(spec.get("description"), str):
                raise ProtocolViolation(
                    f"Invalid input request: tool {name!r} needs a description."
                )
            schema = _obj(spec.get("inputSchema"), "inputSchema").get("json")
            if not isinstance(schema, str):
                raise ProtocolViolation(
                    f"Invalid input request: tool {name!r} inputSchema.json must be a JSON string."
                )
            try:
                parsed = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise ProtocolViolation(
                    f"Invalid input request: tool {name!r} inputSchema.json is not valid JSON."
                ) from exc
            if not isinstance(parsed, dict):
                raise ProtocolViolation(
                    f"Invalid input request: tool {name!r} inputSchema.json must be an object."
                )
            names.append(name)
        choice = config.get("toolChoice")
        if choice is not None:
            choice = _obj(choice, "toolChoice")
            if len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
                raise ProtocolViolation(
                    "Invalid input request: toolChoice must be auto, any or tool."
                )
            if (
                "tool" in choice
                and _obj(choice["tool"], "toolChoice.tool").get("name") not in names
            ):
                raise ProtocolViolation("Invalid input request: toolChoice names an unknown tool.")
        return tuple(names)

    def _check_prompt(self, body: Mapping[str, Any], what: str) -> None:
        if self.phase is not Phase.PROMPT:
            raise ProtocolViolation(f"Invalid input request: {what} outside an active prompt.")
        if body.get("promptName") != self.prompt_name:
            raise ProtocolViolation(
                f"Invalid input request: {what}.promptName {body.get('promptName')!r} does not "
                f"match the active prompt {self.prompt_name!r}."
            )

    # --- content blocks ------------------------------------------------------------------

    def _open_history_block(self) -> _Block | None:
        for block in self.blocks.values():
            if block.type == "TEXT" and not block.interactive:
                return block
        return None

    def _content_start(self, body: dict[str, Any]) -> list[Action]:
        self._check_prompt(body, "contentStart")
        name = _str(body, "contentName", "contentStart")
        if name in self.used_names:
            raise ProtocolViolation(f"Invalid input request: contentName {name!r} reused.")
        ctype = body.get("type")
        role = body.get("role")
        interactive = body.get("interactive")
        if not isinstance(interactive, bool):
            raise ProtocolViolation(
                "Invalid input request: contentStart.interactive must be a boolean."
            )
        actions: list[Action] = []
        block = _Block(name=name, type=str(ctype), role=str(role), interactive=interactive)
        match ctype:
            case "TEXT":
                self._text_start(body, block)
            case "AUDIO":
                actions.append(self._audio_start(body, block))
            case "TOOL":
                self._tool_start(body, block)
            case _:
                raise ProtocolViolation(f"Invalid input request: content type {ctype!r} unknown.")
        self.used_names.add(name)
        self.blocks[name] = block
        self.content_started += 1
        return actions

    def _text_start(self, body: Mapping[str, Any], block: _Block) -> None:
        if "textInputConfiguration" not in body:
            raise ProtocolViolation(
                "Invalid input request: TEXT content requires textInputConfiguration."
            )
        _check_fields(
            _obj(body["textInputConfiguration"], "textInputConfiguration"),
            {"mediaType": "text/plain"},
            "textInputConfiguration",
        )
        if any(b.type == "TEXT" for b in self.blocks.values()):
            raise ProtocolViolation("Invalid input request: a text content block is already open.")
        match block.role, block.interactive:
            case "SYSTEM", False:
                if self.content_started:
                    raise ProtocolViolation(
                        "Invalid input request: the system prompt must be the first content."
                    )
            case (("USER" | "ASSISTANT"), False):
                if self.audio_started:
                    raise ProtocolViolation(HISTORY_BEFORE_AUDIO)
                if not self.history_roles and block.role != "USER":
                    raise ProtocolViolation(
                        "Invalid input request: conversation history must start with a USER "
                        "message."
                    )
                if self.history_roles and self.history_roles[-1] == block.role:
                    raise ProtocolViolation(
                        "Invalid input request: conversation history roles must alternate "
                        "between USER and ASSISTANT."
                    )
                limit = self.scenario.max_history_messages
                if limit is not None and len(self.history_roles) >= limit:
                    raise ProtocolViolation(
                        f"Invalid input request: at most {limit} history messages are allowed."
                    )
                self.history_roles.append(block.role)
            case "USER", True:
                if not self.nova_2:
                    raise ProtocolViolation(
                        f"Invalid input request: {self.model_id} does not accept interactive "
                        "text input."
                    )
            case _:
                raise ProtocolViolation(
                    f"Invalid input request: role {block.role!r} with interactive="
                    f"{block.interactive} is not allowed for TEXT content."
                )

    def _audio_start(self, body: Mapping[str, Any], block: _Block) -> AudioStarted:
        if self._open_history_block() is not None:
            raise ProtocolViolation(HISTORY_BEFORE_AUDIO)
        if block.role != "USER" or not block.interactive:
            raise ProtocolViolation(
                "Invalid input request: AUDIO content must be role USER, interactive true."
            )
        if any(b.type == "AUDIO" for b in self.blocks.values()):
            raise ProtocolViolation(
                "Invalid input request: an audio content block is already open."
            )
        cfg = _obj(body.get("audioInputConfiguration"), "audioInputConfiguration")
        _check_fields(
            cfg,
            {
                "mediaType": "audio/lpcm",
                "sampleSizeBits": 16,
                "channelCount": 1,
                "audioType": "SPEECH",
                "encoding": "base64",
            },
            "audioInputConfiguration",
        )
        rate = cfg.get("sampleRateHertz")
        if rate not in INPUT_SAMPLE_RATES:
            raise ProtocolViolation(
                f"Invalid input request: input sampleRateHertz {rate!r} must be 8000 or 16000."
            )
        self.audio_started = True
        return AudioStarted(int(rate))

    def _tool_start(self, body: Mapping[str, Any], block: _Block) -> None:
        if block.role != "TOOL" or block.interactive:
            raise ProtocolViolation(
                "Invalid input request: TOOL content must be role TOOL, interactive false."
            )
        cfg = _obj(body.get("toolResultInputConfiguration"), "toolResultInputConfiguration")
        tool_use_id = _str(cfg, "toolUseId", "toolResultInputConfiguration")
        _check_fields(cfg, {"type": "TEXT"}, "toolResultInputConfiguration")
        _check_fields(
            _obj(
                cfg.get("textInputConfiguration"),
                "toolResultInputConfiguration.textInputConfiguration",
            ),
            {"mediaType": "text/plain"},
            "toolResultInputConfiguration.textInputConfiguration",
        )
        answering = {b.tool_use_id for b in self.blocks.values() if b.type == "TOOL"}
        if tool_use_id not in self.outstanding_tool_uses or tool_use_id in answering:
            raise ProtocolViolation(
                f"Invalid input request: toolUseId {tool_use_id!r} does not match an "
                "outstanding tool use."
            )
        block.tool_use_id = tool_use_id

    def _block_for(self, body: Mapping[str, Any], what: str) -> _Block:
        self._check_prompt(body, what)
        name = body.get("contentName")
        block = self.blocks.get(name) if isinstance(name, str) else None
        if block is None:
            raise ProtocolViolation(
                f"Invalid input request: {what}.contentName {name!r} is not an open content block."
            )
        return block

    def _content_input(self, kind: str, body: dict[str, Any]) -> list[Action]:
        if kind == "audioInput" and self._open_history_block() is not None:
            raise ProtocolViolation(HISTORY_BEFORE_AUDIO)
        block = self._block_for(body, kind)
        wanted = {"textInput": "TEXT", "audioInput": "AUDIO", "toolResult": "TOOL"}[kind]
        if block.type != wanted:
            raise ProtocolViolation(
                f"Invalid input request: {kind} sent to {block.type} content {block.name!r}."
            )
        content = body.get("content")
        if not isinstance(content, str):
            raise ProtocolViolation(f"Invalid input request: {kind}.content must be a string.")
        match kind:
            case "audioInput":
                try:
                    pcm = base64.b64decode(content, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise ProtocolViolation(
                        "Invalid input request: audioInput.content is not valid base64."
                    ) from exc
                if len(pcm) % 2:
                    raise ProtocolViolation(
                        "Invalid input request: audioInput must hold whole 16-bit samples."
                    )
                return [AudioChunk(pcm)]
            case "textInput":
                block.text.append(content)
                return []
            case _:
                if block.tool_content is not None:
                    raise ProtocolViolation(
                        "Invalid input request: only one toolResult per TOOL content block."
                    )
                block.tool_content = content
                return []

    def _content_end(self, body: dict[str, Any]) -> list[Action]:
        block = self._block_for(body, "contentEnd")
        del self.blocks[block.name]
        if block.type == "AUDIO":
            return [AudioEnded()]
        if block.type == "TOOL":
            if block.tool_content is None or block.tool_use_id is None:
                raise ProtocolViolation(
                    "Invalid input request: TOOL content ended without a toolResult."
                )
            self.outstanding_tool_uses.discard(block.tool_use_id)
            return [ToolResult(block.tool_use_id, block.tool_content)]
        text = "".join(block.text)
        if block.is_history:
            size = len(text.encode("utf-8"))
            per_message = self.scenario.max_history_message_bytes
            if per_message is not None and size > per_message:
                raise ProtocolViolation(
                    f"Invalid input request: a history message exceeds {per_message} bytes."
                )
            self.history_bytes += size
            total = self.scenario.max_history_total_bytes
            if total is not None and self.history_bytes > total:
                raise ProtocolViolation(
                    f"Invalid input request: conversation history exceeds {total} bytes."
                )
        if block.role == "USER" and block.interactive:
            return [UserText(text)]
        return []

    def _prompt_end(self, body: dict[str, Any]) -> list[Action]:
        self._check_prompt(body, "promptEnd")
        open_blocks = tuple(self.blocks)
        self.prompt_closed_cleanly = not open_blocks
        self.blocks_open_at_prompt_end = open_blocks
        self.prompt_ended = True
        self.blocks.clear()
        self.phase = Phase.PROMPT_ENDED
        return [PromptEnded(open_blocks)]

    def _session_end(self) -> list[Action]:
        clean = self.phase is Phase.PROMPT_ENDED and self.prompt_closed_cleanly
        self.phase = Phase.SESSION_ENDED
        return [SessionEnded(clean)]
