"""Application hooks the bridge calls on turn ends, interruptions, tool calls and errors."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .events import SessionEvent

log = logging.getLogger(__name__)

Hook = Callable[[SessionEvent], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Hooks:
    """Each hook takes the SessionEvent that triggered it; sync or async; all optional."""

    on_turn: Hook | None = None
    on_interrupt: Hook | None = None
    on_tool_call: Hook | None = None
    on_error: Hook | None = None


async def call_hook(hook: Hook | None, event: SessionEvent) -> None:
    """Run one hook; an exception is logged, never raised (a hook can't break the call)."""
    if hook is None:
        return
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("hook %s failed on %s", getattr(hook, "__qualname__", hook), event.type)


def _chain(hooks: list[Hook]) -> Hook | None:
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]

    async def chained(event: SessionEvent) -> None:
        for hook in hooks:
            await call_hook(hook, event)

    return chained


def compose_hooks(*hooks: Hooks) -> Hooks:
    """One Hooks that calls each given Hooks' callbacks in order."""
    return Hooks(
        on_turn=_chain([h.on_turn for h in hooks if h.on_turn]),
        on_interrupt=_chain([h.on_interrupt for h in hooks if h.on_interrupt]),
        on_tool_call=_chain([h.on_tool_call for h in hooks if h.on_tool_call]),
        on_error=_chain([h.on_error for h in hooks if h.on_error]),
    )
