"""Session configuration and the value types shared by every provider."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

LatencyTarget = Literal["low", "medium", "high"]
LATENCY_TARGETS: tuple[LatencyTarget, ...] = ("low", "medium", "high")
Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool the model may call. `input_schema` is a JSON Schema object."""

    name: str
    description: str
    input_schema: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made. `arguments` is the raw JSON string as the provider sent it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The answer to one ToolCall. `content` is text (usually JSON) the model reads."""

    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ConversationContext:
    """Ids that flow into logs and telemetry. Never put secrets here."""

    session_id: str = ""
    conversation_id: str = ""
    user_id: str = ""


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One earlier turn of the conversation, replayed into a new or renewed session."""

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Config:
    """Provider configuration. A field left unset (None / empty) means the provider default.

    `extra` holds provider-specific keys such as `region`, `base_url` or `api_key`.
    """

    model: str | None = None
    voice: str | None = None
    instructions: str | None = None
    tools: list[ToolDefinition] = field(default_factory=list)
    language: str | None = None
    latency_target: LatencyTarget | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.latency_target is not None and self.latency_target not in LATENCY_TARGETS:
            from .errors import ConfigError

            raise ConfigError(
                f"latency_target must be one of {', '.join(LATENCY_TARGETS)};"
                f" got {self.latency_target!r}"
            )

    def with_options(self, **options: Any) -> Config:
        """A copy with the per-session overrides that S2S.start() accepts applied.

        None values are ignored so callers can pass through optional settings.
        """
        allowed = {"model", "voice", "instructions", "tools", "language", "latency_target"}
        unknown = set(options) - allowed
        if unknown:
            from .errors import ConfigError

            raise ConfigError(f"unknown session option(s): {', '.join(sorted(unknown))}")
        changes = {k: v for k, v in options.items() if v is not None}
        return replace(self, **changes)

    def __repr__(self) -> str:
        # `extra` may hold keys or tokens: show only its key names.
        return (
            f"Config(model={self.model!r}, voice={self.voice!r},"
            f" tools={[t.name for t in self.tools]},"
            f" language={self.language!r}, latency_target={self.latency_target!r},"
            f" extra_keys={sorted(self.extra)})"
        )
