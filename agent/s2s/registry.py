"""Provider registry: providers register a factory by name; apps create them by name.

Built-in providers live in `plugins/<name>` and are imported on first lookup; third-party
providers publish a factory (or a `register()` function) in the entry-point group
`s2s_voice_agent.providers`.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points

from .config import Config
from .session import S2S

log = logging.getLogger(__name__)

Factory = Callable[[Config], S2S]
ENTRY_POINT_GROUP = "s2s_voice_agent.providers"
BUILTIN_PROVIDERS: dict[str, str] = {
    "nova": "plugins.nova",
    "openai_realtime": "plugins.openai_realtime",
    "gemini_live": "plugins.gemini_live",
}

_factories: dict[str, Factory] = {}
_lock = threading.Lock()
_discovered = False


def register(name: str, factory: Factory) -> None:
    """Register `factory` under `name`. Empty or already-registered names raise ValueError."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("provider name must be a non-empty string")
    with _lock:
        if name in _factories:
            raise ValueError(f"provider {name!r} is already registered")
        _factories[name] = factory


def unregister(name: str) -> None:
    """Remove a provider (tests and plugin reloads)."""
    with _lock:
        _factories.pop(name, None)


def is_registered(name: str) -> bool:
    with _lock:
        return name in _factories


def _import_builtin(name: str) -> None:
    module = BUILTIN_PROVIDERS.get(name)
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only a provider that is not installed is silently absent; a broken one is logged.
        if exc.name is None or not module.startswith(exc.name):
            log.warning("provider %s failed to import: %s", name, exc)
    except Exception as exc:
        log.warning("provider %s failed to import: %s", name, exc)


def _discover() -> None:
    """Import built-in providers and load entry points once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for name in BUILTIN_PROVIDERS:
        if not is_registered(name):
            _import_builtin(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if is_registered(ep.name):
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            log.warning("provider entry point %s failed to load: %s", ep.name, exc)
            continue
        if is_registered(ep.name):  # loading the module registered it
            continue
        if getattr(obj, "__name__", "") == "register":
            obj()
        else:
            register(ep.name, obj)


def providers() -> list[str]:
    """The names of every available provider, sorted."""
    _discover()
    with _lock:
        return sorted(_factories)


def new(name: str, config: Config | None = None) -> S2S:
    """Create the provider `name` with `config`. No network I/O happens here."""
    if not is_registered(name):
        _discover()
    with _lock:
        factory = _factories.get(name)
    if factory is None:
        available = ", ".join(providers()) or "none"
        raise LookupError(f"unknown S2S provider {name!r}; available: {available}")
    return factory(config or Config())
