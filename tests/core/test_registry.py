"""The provider registry and hook helpers of agent.s2s, as specified in their modules."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from agent.s2s import (
    S2S,
    Config,
    EventType,
    Hooks,
    Session,
    SessionEvent,
    call_hook,
    compose_hooks,
    new,
    providers,
    register,
)
from agent.s2s import registry as registry
from tests.support.scripted import ScriptedS2S, ScriptedSession, register_scripted

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty registry with no built-ins and no installed entry points."""
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "BUILTIN_PROVIDERS", {})
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    yield


def factory(config: Config) -> ScriptedS2S:
    return ScriptedS2S(config)


def test_register_and_new(clean_registry: None) -> None:
    register("fake", factory)
    s2s = new("fake", Config(model="m1"))
    assert isinstance(s2s, ScriptedS2S) and s2s.config.model == "m1"
    assert isinstance(new("fake").config, Config)  # default config
    assert providers() == ["fake"]


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name_is_rejected(clean_registry: None, name: str) -> None:
    with pytest.raises(ValueError):
        register(name, factory)


def test_duplicate_name_is_rejected(clean_registry: None) -> None:
    register("fake", factory)
    with pytest.raises(ValueError, match="already registered"):
        register("fake", factory)


def test_unknown_name_lists_available(clean_registry: None) -> None:
    register("alpha", factory)
    register("beta", factory)
    with pytest.raises(LookupError, match=r"'gamma'.*available: alpha, beta"):
        new("gamma")


def test_unknown_with_none_registered(clean_registry: None) -> None:
    with pytest.raises(LookupError, match="available: none"):
        new("gamma")


def test_entry_point_discovery(
    clean_registry: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A factory entry point, a register() entry point and a broken one.
    calls: list[str] = []

    def register_fn() -> None:
        calls.append("register")
        register("via_register", factory)

    register_fn.__name__ = "register"
    targets: dict[str, Any] = {
        "core_test_ep:factory": factory,
        "core_test_ep:register": register_fn,
    }

    class FakeEntryPoint:
        def __init__(self, name: str, value: str) -> None:
            self.name, self.value = name, value

        def load(self) -> Any:
            if self.value not in targets:
                raise ImportError("broken plugin")
            return targets[self.value]

    eps = [
        FakeEntryPoint("via_factory", "core_test_ep:factory"),
        FakeEntryPoint("via_register", "core_test_ep:register"),
        FakeEntryPoint("broken", "core_test_ep:missing"),
    ]
    seen_groups: list[str] = []

    def fake_entry_points(group: str) -> list[FakeEntryPoint]:
        seen_groups.append(group)
        return eps

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    with caplog.at_level(logging.WARNING, logger="agent.s2s.registry"):
        assert providers() == ["via_factory", "via_register"]
    assert "broken" in caplog.text
    assert seen_groups == [registry.ENTRY_POINT_GROUP] and calls == ["register"]
    assert isinstance(new("via_factory"), ScriptedS2S)
    providers()  # discovery runs once
    assert seen_groups == [registry.ENTRY_POINT_GROUP]


def test_scripted_session_implements_the_protocols() -> None:
    session: Session = ScriptedSession()  # checked statically by mypy too
    s2s: S2S = ScriptedS2S(Config())
    assert isinstance(session, Session) and s2s.config == Config()


def test_scripted_provider_registration(clean_registry: None) -> None:
    provider = register_scripted()
    try:
        assert "scripted" in providers()
        with pytest.raises(ValueError):
            register_scripted()
    finally:
        provider.unregister()
    assert "scripted" not in providers()


async def test_scripted_start_records_options(clean_registry: None) -> None:
    provider = register_scripted()
    s2s = new("scripted", Config(model="m", extra={"input_rate": 24000, "api_key": "x"}))
    session = await s2s.start(instructions="be brief")
    assert provider.sessions == [session]
    assert session.input_format.sample_rate == 24000
    assert provider.starts[0]["instructions"] == "be brief" and provider.starts[0]["model"] == "m"
    await session.close()


# -- hooks ----------------------------------------------------------------------------------


async def test_compose_hooks_calls_in_order_and_skips_missing() -> None:
    order: list[str] = []

    async def first(event: SessionEvent) -> None:
        order.append("first")

    def second(event: SessionEvent) -> None:
        order.append("second")

    def third(event: SessionEvent) -> None:
        order.append("third")

    hooks = compose_hooks(Hooks(on_turn=first), Hooks(), Hooks(on_turn=second, on_error=third))
    event = SessionEvent(type=EventType.TURN_END)
    await call_hook(hooks.on_turn, event)
    await call_hook(hooks.on_error, event)
    assert order == ["first", "second", "third"]
    assert hooks.on_interrupt is None and hooks.on_tool_call is None
    assert compose_hooks(Hooks(on_turn=second)).on_turn is second


async def test_a_raising_hook_is_logged_and_the_chain_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    order: list[str] = []

    def bad(event: SessionEvent) -> None:
        raise RuntimeError("hook bug")

    hooks = compose_hooks(Hooks(on_turn=bad), Hooks(on_turn=lambda e: order.append("after")))
    with caplog.at_level(logging.ERROR, logger="agent.s2s.hooks"):
        await call_hook(hooks.on_turn, SessionEvent(type=EventType.TURN_END))
    assert order == ["after"]
    assert "hook bug" in caplog.text
    await call_hook(None, SessionEvent(type=EventType.TURN_END))  # no hook: nothing happens
