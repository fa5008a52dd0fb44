"""The provider-neutral speech-to-speech API."""

from .config import (
    LATENCY_TARGETS,
    Config,
    ConversationContext,
    HistoryMessage,
    LatencyTarget,
    ToolCall,
    ToolDefinition,
    ToolResult,
)
from .errors import ConfigError, ProviderError, S2SError, SessionClosedError
from .events import EventType, SessionEvent
from .hooks import Hook, Hooks, call_hook, compose_hooks
from .registry import ENTRY_POINT_GROUP, new, providers, register, unregister
from .session import S2S, AudioFormat, Session
from .stream import EventStream, SessionBase

__all__ = [
    "ENTRY_POINT_GROUP",
    "LATENCY_TARGETS",
    "S2S",
    "AudioFormat",
    "Config",
    "ConfigError",
    "ConversationContext",
    "EventStream",
    "EventType",
    "HistoryMessage",
    "Hook",
    "Hooks",
    "LatencyTarget",
    "ProviderError",
    "S2SError",
    "Session",
    "SessionBase",
    "SessionClosedError",
    "SessionEvent",
    "ToolCall",
    "ToolDefinition",
    "ToolResult",
    "call_hook",
    "compose_hooks",
    "new",
    "providers",
    "register",
    "unregister",
]
