"""The agent's `lk.agent.state` participant attribute, which LiveKit clients show."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .textstream import ATTR_AGENT_STATE

log = logging.getLogger(__name__)

SetAttributes = Callable[[dict[str, str]], Awaitable[None]]


class StatePublisher:
    """Publishes the latest state; updates that arrive while one is being sent coalesce, so a
    slow room never queues stale states (and never blocks the bridge's sync callback)."""

    def __init__(self, set_attributes: SetAttributes) -> None:
        self._set_attributes = set_attributes
        self._wanted: str | None = None
        self._published: str | None = None
        self._changed = asyncio.Event()
        self.history: list[str] = []  # every state published, in order (logs and tests)

    def set(self, state: str) -> None:
        if state != self._wanted:
            self._wanted = state
            self._changed.set()

    @property
    def published(self) -> str | None:
        return self._published

    async def flush(self) -> None:
        state = self._wanted
        if state is None or state == self._published:
            return
        try:
            await self._set_attributes({ATTR_AGENT_STATE: state})
        except Exception as exc:
            log.warning("failed to publish agent state %s: %s", state, exc)
            return
        self._published = state
        self.history.append(state)

    async def run(self) -> None:
        """Publish changes until cancelled."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self.flush()
