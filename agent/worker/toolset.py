"""The tools a conversation offers: the core registry plus the user's own modules."""

from __future__ import annotations

import logging

from agent.tools import ToolRegistry, default_registry

log = logging.getLogger(__name__)


class ToolsModuleError(ImportError):
    """A module named in S2S_TOOLS_MODULE could not be imported or registered."""


def load_tools(modules: tuple[str, ...] | list[str]) -> ToolRegistry:
    """Import each module (their `@function_tool`s land in the default registry, or their
    `register_tools(registry)` is called) and return the default registry. Idempotent."""
    for name in modules:
        try:
            default_registry.load_module(name)
        except Exception as exc:
            raise ToolsModuleError(
                f"S2S_TOOLS_MODULE: cannot load tools from {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
    if modules:
        log.debug("tools available: %s", ", ".join(default_registry.names()) or "none")
    return default_registry
