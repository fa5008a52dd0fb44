"""The provider-neutral session interface."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from .config import Config, ConversationContext, HistoryMessage, ToolDefinition, ToolResult
from .events import SessionEvent


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """Mono PCM16 LE at `sample_rate`; `frame_ms` is the frame size the session prefers."""

    sample_rate: int
    frame_ms: int = 20
    channels: int = 1

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    @property
    def frame_bytes(self) -> int:
        return self.frame_samples * 2 * self.channels

    def duration_ms(self, nbytes: int) -> float:
        return nbytes / (2 * self.channels) * 1000.0 / self.sample_rate


@runtime_checkable
class Session(Protocol):
    """A live conversation with a speech-to-speech model."""

    @property
    def input_format(self) -> AudioFormat: ...

    @property
    def output_format(self) -> AudioFormat: ...

    async def send_audio(self, pcm: bytes) -> None:
        """PCM16 LE mono at input_format.sample_rate, ideally input_format.frame_ms long."""

    async def send_text(self, text: str) -> None:
        """A user text message (e.g. to make the agent speak first)."""

    async def send_tool_result(self, result: ToolResult) -> None: ...

    def events(self) -> AsyncIterator[SessionEvent]:
        """The session's events; the iterator ends after close()."""
        ...

    async def interrupt(self, played_ms: int | None = None) -> None:
        """The user barged in; `played_ms` is how much of the current reply was heard."""

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class S2S(Protocol):
    """A configured provider. Creating one does no network I/O; start() connects."""

    @property
    def config(self) -> Config: ...

    async def start(
        self,
        *,
        model: str | None = None,
        voice: str | None = None,
        instructions: str | None = None,
        tools: Sequence[ToolDefinition] | None = None,
        history: Sequence[HistoryMessage] | None = None,
        context: ConversationContext | None = None,
    ) -> Session: ...
