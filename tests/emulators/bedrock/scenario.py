"""What the emulated model says (Scenario, Turn, ToolCallSpec) and what goes wrong (Faults)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

NOVA_SONIC_V1 = "amazon.nova-sonic-v1:0"
NOVA_2_SONIC = "amazon.nova-2-sonic-v1:0"
NOVA_2_SONIC_US = "us.amazon.nova-2-sonic-v1:0"

# Exactly the per-model voice lists of the protocol notes (Nova 2 has no "greta").
V1_VOICES: frozenset[str] = frozenset(
    {
        "tiffany",
        "matthew",
        "amy",
        "ambre",
        "florian",
        "beatrice",
        "lorenzo",
        "greta",
        "lennart",
        "lupe",
        "carlos",
    }
)
NOVA_2_VOICES: frozenset[str] = frozenset(
    {
        "matthew",
        "tiffany",
        "amy",
        "olivia",
        "lupe",
        "carlos",
        "ambre",
        "florian",
        "tina",
        "lennart",
        "beatrice",
        "lorenzo",
        "carolina",
        "leo",
        "arjun",
        "kiara",
    }
)


def default_voices() -> dict[str, frozenset[str]]:
    """Model id → voices it accepts (the models the emulator serves)."""
    return {NOVA_SONIC_V1: V1_VOICES, NOVA_2_SONIC: NOVA_2_VOICES, NOVA_2_SONIC_US: NOVA_2_VOICES}


def is_nova_2(model_id: str) -> bool:
    return "nova-2-sonic" in model_id


@dataclass(frozen=True)
class ToolCallSpec:
    """A tool call the model makes in a turn, before it replies."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    # The service sometimes sends toolUse.content as a JSON string of a JSON string.
    double_encode: bool = False
    tool_use_id: str | None = None  # None → a fresh UUID


@dataclass(frozen=True)
class Turn:
    """One scripted exchange: what the user is heard saying and what the model answers.

    ``reply_text`` may contain ``{tool_result}``; otherwise the tool result (if any) is
    appended to it, so tests can see that the result reached the model.
    """

    user_text: str = "Hello."
    reply_text: str = "Hi there."
    reply_audio_ms: int = 600
    tone_hz: float = 440.0
    tool_call: ToolCallSpec | None = None


@dataclass(frozen=True)
class Scenario:
    turns: tuple[Turn, ...] = (Turn(),)
    # Used once the scripted turns are exhausted.
    fallback_turn: Turn = Turn(user_text="(more speech)", reply_text="I heard you.")
    voices: Mapping[str, frozenset[str]] = field(default_factory=default_voices)
    # Energy endpointing on 16 kHz PCM16 input (audio time, not wall time).
    speech_rms_threshold: float = 500.0
    min_speech_ms: int = 200
    min_silence_ms: int = 400
    # Speech needed during playout before the model treats it as a barge-in.
    barge_in_speech_ms: int = 120
    analysis_window_ms: int = 20
    # Reply audio: chunk length and speed as a multiple of real time (0 → no pacing).
    reply_chunk_ms: int = 100
    reply_pace: float = 4.0
    # Gap between the trigger (end of user speech / text) and the first reply event.
    response_delay_s: float = 0.0
    # Server → client grace period after the service ends its side (errors, sessionEnd)
    # before it resets a request stream the client has not finished.
    close_grace_s: float = 2.0
    # Optional history caps (None = unchecked): messages, bytes per message, total bytes.
    max_history_messages: int | None = None
    max_history_message_bytes: int | None = None
    max_history_total_bytes: int | None = None

    def turn(self, index: int) -> Turn:
        """The scripted turn for 0-based ``index``."""
        return self.turns[index] if index < len(self.turns) else self.fallback_turn

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Scenario:
        kwargs: dict[str, Any] = dict(data)
        if "turns" in kwargs:
            kwargs["turns"] = tuple(_turn_from_json(t) for t in kwargs["turns"])
        if "fallback_turn" in kwargs:
            kwargs["fallback_turn"] = _turn_from_json(kwargs["fallback_turn"])
        if "voices" in kwargs:
            kwargs["voices"] = {m: frozenset(v) for m, v in kwargs["voices"].items()}
        return Scenario(**kwargs)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["voices"] = {m: sorted(v) for m, v in self.voices.items()}
        return out


def _turn_from_json(data: Mapping[str, Any]) -> Turn:
    kwargs = dict(data)
    tool = kwargs.get("tool_call")
    if tool is not None:
        kwargs["tool_call"] = ToolCallSpec(**tool)
    return Turn(**kwargs)


ExceptionMember = Literal[
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "modelTimeoutException",
    "serviceUnavailableException",
]


@dataclass(frozen=True)
class Faults:
    """Failures to inject. Turn numbers count replies across the whole emulator (1-based),
    so a fault fires once even when the client reconnects; each fires at most once."""

    # The service's connection lifetime (≈ 8 min): modelTimeoutException after this long.
    connection_limit_s: float | None = 480.0
    # No user speech/text for this long → ValidationException InternalErrorCode=531.
    idle_timeout_s: float | None = 175.0
    # RST_STREAM (INTERNAL_ERROR) halfway through the reply audio of this turn.
    reset_on_turn: int | None = None
    # A frame with a corrupted message CRC halfway through this turn's audio, then END_STREAM.
    bad_crc_on_turn: int | None = None
    # Half a frame, then END_STREAM, halfway through this turn's audio.
    truncated_frame_on_turn: int | None = None
    # An exception frame halfway through this turn's audio, then END_STREAM.
    internal_error_on_turn: int | None = None
    internal_error_type: ExceptionMember = "internalServerException"
    internal_error_message: str = "System instability detected. Please retry your request."
    # Stop sending for stall_s halfway through this turn's audio, then carry on.
    stall_on_turn: int | None = None
    stall_s: float = 2.0
    # The first N requests get an HTTP error instead of a stream.
    throttle_first: int = 0
    throttle_status: int = 429
    throttle_error_type: str = "ThrottlingException"
    throttle_message: str = "Too many requests, please wait before trying again."
    # Slow reads: wait this long before consuming each received frame (flow control pushes back).
    read_delay_s: float = 0.0

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Faults:
        return Faults(**dict(data))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_json_arg(value: str) -> dict[str, Any]:
    """A CLI argument that is inline JSON (starts with '{') or a path to a JSON file."""
    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise ValueError("expected a JSON object")
    return loaded
