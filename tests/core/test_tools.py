"""ToolRegistry: schema derivation, decorators, module loading and never-raising run()."""

from __future__ import annotations

import asyncio
import enum
import json
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.s2s import ToolCall
from agent.tools import ToolRegistry, default_registry, function_tool
from agent.tools.schema import function_schema, parse_docstring

pytestmark = pytest.mark.timeout(20)


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def weather(
    city: str,
    days: int,
    unit: Unit = Unit.CELSIUS,
    detailed: bool = False,
    tags: list[str] | None = None,
    mode: Literal["fast", "slow"] = "fast",
    threshold: float | None = None,
) -> dict[str, Any]:
    """Look up the weather
    for a city.

    Args:
        city: The city name,
            e.g. "Paris".
        days (int): How many days ahead.
        unit: Temperature unit.

    Returns:
        A forecast.
    """
    return {"city": city, "days": days, "unit": unit, "tags": tags, "threshold": threshold}


def test_schema_from_signature_and_docstring() -> None:
    schema = function_schema(weather)
    assert schema.description == "Look up the weather for a city."
    s = schema.input_schema
    assert s["type"] == "object" and s["additionalProperties"] is False
    assert s["required"] == ["city", "days"]  # defaults and Optionals are not required
    props = s["properties"]
    assert props["city"] == {"type": "string", "description": 'The city name, e.g. "Paris".'}
    assert props["days"] == {"type": "integer", "description": "How many days ahead."}
    assert props["unit"] == {
        "enum": ["celsius", "fahrenheit"],
        "type": "string",
        "description": "Temperature unit.",
        "default": "celsius",
    }
    assert props["detailed"] == {"type": "boolean", "default": False}
    assert props["tags"] == {
        "type": ["array", "null"],
        "items": {"type": "string"},
        "default": None,
    }
    assert props["mode"] == {"enum": ["fast", "slow"], "type": "string", "default": "fast"}
    assert props["threshold"] == {"type": ["number", "null"], "default": None}


def test_more_types_and_errors() -> None:
    def f(a: dict[str, int], b: Literal[1, 2], c: Any, d: tuple[int, ...], e: int | str) -> None:
        """No args section."""

    props = function_schema(f).input_schema["properties"]
    assert props["a"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["b"] == {"enum": [1, 2], "type": "integer"}
    assert props["c"] == {}
    assert props["d"] == {"type": "array", "items": {"type": "integer"}}
    assert props["e"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}

    def untyped(x) -> None:  # type: ignore[no-untyped-def]
        pass

    def star(*args: int) -> None:
        pass

    def bad(x: complex) -> None:
        pass

    def badkeys(x: dict[int, int]) -> None:
        pass

    for fn in (untyped, star, bad, badkeys):
        with pytest.raises(TypeError):
            function_schema(fn)


def test_parse_docstring_variants() -> None:
    doc = textwrap.dedent(
        """
        Summary line.

        More text.

        Arguments:
            a (str): first
              continued
            b: second
        Raises:
            ValueError: never
        """
    )
    desc, args = parse_docstring(doc)
    assert desc == "Summary line. More text."
    assert args == {"a": "first continued", "b": "second"}
    assert parse_docstring(None) == ("", {})


def test_registry_add_decorators_and_names() -> None:
    reg = ToolRegistry()

    @reg.tool
    def plain(x: int) -> int:
        """Plain."""
        return x

    @reg.tool(name="renamed", description="Custom description.")
    async def other(y: str) -> str:
        return y

    assert plain(2) == 2  # the decorator returns the function itself
    assert reg.names() == ["plain", "renamed"]
    defs = {d.name: d for d in reg.definitions()}
    assert defs["renamed"].description == "Custom description."
    assert defs["plain"].input_schema["required"] == ["x"]
    assert "plain" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="already registered"):
        reg.add(plain)
    with pytest.raises(ValueError, match="tool name"):
        reg.add(plain, name="has space")


def call(name: str, args: Any, call_id: str = "c1") -> ToolCall:
    raw = args if isinstance(args, str) else json.dumps(args)
    return ToolCall(call_id, name, raw)


def error_of(result: Any) -> str:
    assert result.is_error
    message = json.loads(result.content)["error"]
    assert isinstance(message, str)
    return message


async def test_run_success_converts_arguments_and_result() -> None:
    reg = ToolRegistry()
    reg.add(weather)
    result = await reg.run(
        call("weather", {"city": "Oslo", "days": 2.0, "unit": "fahrenheit", "tags": ["a"]})
    )
    assert not result.is_error and result.call_id == "c1"
    # days 2.0 -> int 2, "fahrenheit" -> Unit, missing Optional -> None; Enum serialised back
    assert json.loads(result.content) == {
        "city": "Oslo",
        "days": 2,
        "unit": "fahrenheit",
        "tags": ["a"],
        "threshold": None,
    }


async def test_run_sync_tool_in_a_thread_and_str_result() -> None:
    reg = ToolRegistry()
    seen: list[int | None] = []

    @reg.tool
    def where() -> str:
        seen.append(threading.get_ident())
        return "plain text"

    result = await reg.run(call("where", ""))  # empty arguments mean {}
    assert result.content == "plain text" and not result.is_error
    assert seen[0] != threading.get_ident()


async def test_run_errors_become_results() -> None:
    reg = ToolRegistry()
    reg.add(weather)

    @reg.tool
    def boom() -> None:
        raise RuntimeError("kaput")

    @reg.tool
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    assert "unknown tool 'nope'" in error_of(await reg.run(call("nope", {})))
    assert "available tools: weather, boom, slow" in error_of(await reg.run(call("nope", {})))
    assert "not valid JSON" in error_of(await reg.run(call("weather", "{city:")))
    assert "must be a JSON object" in error_of(await reg.run(call("weather", "[1]")))
    msg = error_of(await reg.run(call("weather", {"city": "Oslo"})))
    assert "invalid arguments" in msg and "'days' is a required property" in msg
    msg = error_of(await reg.run(call("weather", {"city": "Oslo", "days": "x"})))
    assert "at days" in msg
    msg = error_of(await reg.run(call("weather", {"city": "x", "days": 1, "extra": 1})))
    assert "extra" in msg
    assert "RuntimeError: kaput" in error_of(await reg.run(call("boom", {})))
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert "timed out after 0.1 s" in error_of(await reg.run(call("slow", {}), timeout_s=0.1))
    assert loop.time() - start < 1.0


async def test_run_propagates_cancellation_into_the_tool() -> None:
    reg = ToolRegistry()
    started, cancelled = asyncio.Event(), asyncio.Event()

    @reg.tool
    async def wait() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(reg.run(call("wait", {})))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


def test_function_tool_and_load_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "user_tools_for_test.py"
    module.write_text(
        textwrap.dedent(
            '''
            from agent.tools import function_tool

            @function_tool
            def add(a: int, b: int) -> int:
                """Add two numbers."""
                return a + b

            @function_tool(name="greet_person")
            def greet(name: str) -> str:
                return "hi " + name
            '''
        )
    )
    other = tmp_path / "user_tools_hook_for_test.py"
    other.write_text(
        textwrap.dedent(
            """
            def register_tools(registry):
                registry.add(lambda: "pong", name="ping", description="Ping.")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(default_registry.names())
    try:
        reg = ToolRegistry()
        assert reg.load_module("user_tools_for_test") == ["add", "greet_person"]
        assert set(default_registry.names()) - before == {"add", "greet_person"}
        assert reg.load_module("user_tools_for_test") == []  # loading twice adds nothing
        assert reg.load_module("user_tools_hook_for_test") == ["ping"]
        with pytest.raises(ImportError):
            reg.load_module("no_such_module_for_test")
        result = asyncio.run(reg.run(call("add", {"a": 2, "b": 3})))
        assert result.content == "5"
    finally:
        for name in ("add", "greet_person"):
            default_registry._tools.pop(name, None)
        sys.modules.pop("user_tools_for_test", None)
        sys.modules.pop("user_tools_hook_for_test", None)


def test_function_tool_decorator_forms() -> None:
    try:

        @function_tool
        def core_test_tool_a(x: str) -> str:
            return x

        @function_tool(description="B.")
        def core_test_tool_b() -> None:
            pass

        assert {"core_test_tool_a", "core_test_tool_b"} <= set(default_registry.names())
        assert core_test_tool_a("x") == "x"
    finally:
        default_registry._tools.pop("core_test_tool_a", None)
        default_registry._tools.pop("core_test_tool_b", None)
