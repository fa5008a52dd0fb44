"""Building blocks for provider sessions: a bounded event stream and the async-with shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from .events import SessionEvent

_CLOSED = object()


class EventStream:
    """A bounded single-consumer queue of SessionEvents that ends when closed.

    `put` waits when the consumer lags (backpressure on the provider reader rather than
    unbounded memory). After `close()` the iterator drains what is queued, then ends;
    later `put`s are dropped.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._queue: asyncio.Queue[SessionEvent | object] = asyncio.Queue(maxsize)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, event: SessionEvent) -> None:
        if not self._closed:
            await self._queue.put(event)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put_nowait(_CLOSED)
        except asyncio.QueueFull:
            # Consumer lags: drop the oldest event so the end marker always fits.
            self._queue.get_nowait()
            self._queue.put_nowait(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[SessionEvent]:
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                # Leave the marker for any other iterator and stop.
                self._queue.put_nowait(_CLOSED)
                return
            assert isinstance(item, SessionEvent)
            yield item


class SessionBase:
    """`async with` support for sessions: exiting closes the session."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
