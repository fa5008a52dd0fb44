"""Events a session emits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .config import ToolCall
from .errors import S2SError


class EventType(StrEnum):
    AUDIO_OUTPUT = "audio_output"  # model speech, PCM16 LE mono at session.output_format
    TEXT_OUTPUT = "text_output"  # model text / transcript of its speech; `final` marks the last
    TRANSCRIPT = "transcript"  # what the user said
    TOOL_CALL = "tool_call"
    TOOL_CALL_CANCELLED = "tool_call_cancelled"
    TURN_END = "turn_end"  # exactly one per assistant turn
    INTERRUPTED = "interrupted"  # the provider says the user barged in
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent:
    """One event. Only `type` is required; the other fields are set as the type needs.

    `turn_id` names the assistant turn an event belongs to (AUDIO_OUTPUT, TEXT_OUTPUT,
    TOOL_CALL, TURN_END, INTERRUPTED), so consumers can drop late audio of an interrupted
    turn. For TRANSCRIPT it names the user turn.
    """

    type: EventType
    audio: bytes | None = None
    text: str | None = None
    final: bool = False
    tool_call: ToolCall | None = None
    call_ids: tuple[str, ...] = ()
    error: S2SError | None = None
    turn_id: str | None = None

    def __repr__(self) -> str:
        parts = [f"type={self.type.value}"]
        if self.audio is not None:
            parts.append(f"audio={len(self.audio)}B")
        if self.text is not None:
            parts.append(f"text={self.text[:40]!r}")
        if self.final:
            parts.append("final")
        if self.tool_call is not None:
            parts.append(f"tool_call={self.tool_call.name}#{self.tool_call.id}")
        if self.call_ids:
            parts.append(f"call_ids={self.call_ids}")
        if self.error is not None:
            parts.append(f"error={self.error!r}")
        if self.turn_id is not None:
            parts.append(f"turn_id={self.turn_id}")
        return f"SessionEvent({', '.join(parts)})"
