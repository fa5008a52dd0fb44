"""Start-up checks that fail fast with a clear message, and the `download-files` step."""

from __future__ import annotations

import logging

from agent import s2s

from .settings import Settings
from .toolset import ToolsModuleError, load_tools

log = logging.getLogger(__name__)


def check_startup(settings: Settings) -> str | None:
    """None when the tool modules load and the provider exists; else what is wrong. Tool
    modules load first: one may also register a provider (s2s.register)."""
    try:
        load_tools(settings.tools_modules)
    except ToolsModuleError as exc:
        return str(exc)
    available = s2s.providers()
    if settings.provider not in available:
        return (
            f"S2S_PROVIDER {settings.provider!r} is not available;"
            f" installed providers: {', '.join(available) or 'none'}"
        )
    return None


def download_files() -> int:
    """Import providers and tools (so a Docker build fails on a broken image, not the first
    call) and run the download step of any livekit-agents plugins installed alongside."""
    from livekit.agents import Plugin

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("providers: %s", ", ".join(s2s.providers()) or "none")
    status = 0
    for plugin in Plugin.registered_plugins:
        try:
            plugin.download_files()
        except Exception as exc:
            log.error("downloading files for %s failed: %s", plugin.package, exc)
            status = 1
    return status
