"""A Session wrapper that measures how much reply audio each turn has delivered so far.

The bridge buffers reply audio that arrives faster than real time, so neither the sink nor
the bridge knows a reply's length until it has played; transcripts need it to release the
reply's words in proportion to playout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from agent.s2s import AudioFormat, EventType, Session, SessionBase, SessionEvent, ToolResult

_TURNS_KEPT = 8


class MeteredSession(SessionBase):
    """Delegates everything to `inner`; counts AUDIO_OUTPUT per turn id as it is read."""

    def __init__(self, inner: Session) -> None:
        self._inner = inner
        self._bytes: dict[str | None, int] = {}
        self._bytes_per_ms = inner.output_format.sample_rate * 2 / 1000.0

    @property
    def inner(self) -> Session:
        return self._inner

    def received_ms(self, turn_id: str | None) -> float:
        return self._bytes.get(turn_id, 0) / self._bytes_per_ms

    @property
    def input_format(self) -> AudioFormat:
        return self._inner.input_format

    @property
    def output_format(self) -> AudioFormat:
        return self._inner.output_format

    async def send_audio(self, pcm: bytes) -> None:
        await self._inner.send_audio(pcm)

    async def send_text(self, text: str) -> None:
        await self._inner.send_text(text)

    async def send_tool_result(self, result: ToolResult) -> None:
        await self._inner.send_tool_result(result)

    async def events(self) -> AsyncIterator[SessionEvent]:
        async for event in self._inner.events():
            if event.type is EventType.AUDIO_OUTPUT and event.audio:
                self._count(event.turn_id, len(event.audio))
            yield event

    def _count(self, turn_id: str | None, nbytes: int) -> None:
        if turn_id not in self._bytes:
            if len(self._bytes) >= _TURNS_KEPT:
                del self._bytes[next(iter(self._bytes))]
            self._bytes[turn_id] = 0
        self._bytes[turn_id] += nbytes

    async def interrupt(self, played_ms: int | None = None) -> None:
        await self._inner.interrupt(played_ms)

    async def close(self) -> None:
        await self._inner.close()
