"""Amazon Nova Sonic (Bedrock InvokeModelWithBidirectionalStream) provider, registered as
"nova". Import it (or let agent.s2s.registry find it) and call `agent.s2s.new("nova", config)`.
"""

from __future__ import annotations

import contextlib

from agent.s2s import registry

from . import logsafe
from .config import NovaSettings, RetryPolicy, resolve_settings
from .provider import NovaS2S
from .session import INPUT_FORMAT, OUTPUT_FORMAT, NovaSession
from .voices import DEFAULT_MODEL, DEFAULT_VOICE, MODELS, ModelSpec, model_spec

NAME = "nova"


def register() -> None:
    """Register the "nova" provider (safe to call more than once)."""
    if not registry.is_registered(NAME):
        # ValueError: registered meanwhile by another import path.
        with contextlib.suppress(ValueError):
            registry.register(NAME, NovaS2S)


logsafe.install()
register()

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_VOICE",
    "INPUT_FORMAT",
    "MODELS",
    "NAME",
    "OUTPUT_FORMAT",
    "ModelSpec",
    "NovaS2S",
    "NovaSession",
    "NovaSettings",
    "RetryPolicy",
    "model_spec",
    "register",
    "resolve_settings",
]
