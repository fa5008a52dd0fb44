"""`NovaS2S`: the configured provider. Creating one validates; start() connects."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from agent.s2s import Config, ConversationContext, HistoryMessage, ToolDefinition

from .config import NovaSettings, resolve_settings
from .session import NovaSession
from .transport import ClientPool


class NovaS2S:
    """Amazon Nova Sonic over Bedrock's bidirectional HTTP/2 stream.

    The config is validated here (unknown model or voice → ConfigError), and again with
    the per-session overrides in start(), both before any network I/O. Sessions started
    from one NovaS2S in one event loop share a client (one HTTP/2 connection).
    """

    def __init__(self, config: Config | None = None) -> None:
        self._config = config or Config()
        self._settings = resolve_settings(self._config)
        self._pool = ClientPool()

    def __repr__(self) -> str:
        return f"NovaS2S({self._settings!r})"

    @property
    def config(self) -> Config:
        return self._config

    @property
    def settings(self) -> NovaSettings:
        return self._settings

    async def start(
        self,
        *,
        model: str | None = None,
        voice: str | None = None,
        instructions: str | None = None,
        tools: Sequence[ToolDefinition] | None = None,
        history: Sequence[HistoryMessage] | None = None,
        context: ConversationContext | None = None,
    ) -> NovaSession:
        config = self._config.with_options(
            model=model,
            voice=voice,
            instructions=instructions,
            tools=list(tools) if tools is not None else None,
        )
        if model is not None and voice is None and self._config.voice is not None:
            # A different model may not have the configured voice: re-validate it.
            config = dataclasses.replace(config, voice=self._config.voice)
        settings = self._settings if config == self._config else resolve_settings(config)
        session = NovaSession(settings, pool=self._pool, history=history or (), context=context)
        await session._start()
        return session
