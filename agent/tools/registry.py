"""Tools the model may call: Python callables (sync or async) with derived JSON schemas."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import importlib
import inspect
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

import jsonschema

from agent.s2s import ToolCall, ToolDefinition, ToolResult

from .schema import FunctionSchema, coerce, function_schema

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_ATTR = "__s2s_tool__"  # set on functions decorated with @function_tool


@dataclass(frozen=True, slots=True)
class _Tool:
    fn: Callable[..., Any]
    definition: ToolDefinition
    schema: FunctionSchema
    validator: jsonschema.protocols.Validator


class ToolRegistry:
    """A named set of tools.

    `run` never raises for a bad call: unknown tools, arguments that are not JSON or do not
    match the schema, exceptions and timeouts all become `is_error` results whose content is
    `{"error": "..."}`, so the conversation goes on. Sync tools run in a worker thread; a
    timed-out or cancelled sync tool's thread finishes on its own (threads cannot be killed).
    """

    def __init__(self) -> None:
        self._tools: dict[str, _Tool] = {}

    def add(
        self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> ToolDefinition:
        """Register `fn`; returns its definition. Bad or duplicate names raise ValueError,
        signatures that cannot be described raise TypeError."""
        tool_name = str(name or getattr(fn, "__name__", ""))
        if not _NAME.match(tool_name):
            raise ValueError(f"tool name must match {_NAME.pattern}; got {tool_name!r}")
        if tool_name in self._tools:
            raise ValueError(f"tool {tool_name!r} is already registered")
        schema = function_schema(fn, description)
        validator_cls = jsonschema.validators.validator_for(schema.input_schema)
        validator_cls.check_schema(schema.input_schema)
        definition = ToolDefinition(tool_name, schema.description, schema.input_schema)
        self._tools[tool_name] = _Tool(fn, definition, schema, validator_cls(schema.input_schema))
        return definition

    @overload
    def tool[F: Callable[..., Any]](self, fn: F, /) -> F: ...

    @overload
    def tool[F: Callable[..., Any]](
        self, /, *, name: str | None = None, description: str | None = None
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Any:
        """Decorator: `@registry.tool` or `@registry.tool(name=..., description=...)`."""

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            definition = self.add(func, name=name, description=description)
            setattr(func, TOOL_ATTR, definition)
            return func

        return register(fn) if fn is not None else register

    def definitions(self) -> list[ToolDefinition]:
        return [t.definition for t in self._tools.values()]

    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def load_module(self, dotted_name: str) -> list[str]:
        """Import a user module and add the tools it defines with `@function_tool`.

        A module may instead define `register_tools(registry)`, which is then called with
        this registry. Returns the names added. Import errors propagate.
        """
        module = importlib.import_module(dotted_name)
        before = set(self._tools)
        hook = getattr(module, "register_tools", None)
        if callable(hook):
            hook(self)
        else:
            for value in vars(module).values():
                definition = getattr(value, TOOL_ATTR, None)
                if isinstance(definition, ToolDefinition) and definition.name not in self:
                    self.add(value, name=definition.name, description=definition.description)
        return [n for n in self._tools if n not in before]

    async def run(self, call: ToolCall, *, timeout_s: float = 15.0) -> ToolResult:
        """Run one call; see the class docstring for how failures are reported."""
        tool = self._tools.get(call.name)
        if tool is None:
            available = ", ".join(self._tools) or "none"
            return _error(call, f"unknown tool {call.name!r}; available tools: {available}")
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError as exc:
            return _error(call, f"arguments for {call.name!r} are not valid JSON: {exc}")
        if not isinstance(args, dict):
            return _error(call, f"arguments for {call.name!r} must be a JSON object")
        problem = jsonschema.exceptions.best_match(tool.validator.iter_errors(args))
        if problem is not None:
            where = "/".join(str(p) for p in problem.absolute_path) or "arguments"
            return _error(
                call, f"invalid arguments for {call.name!r} at {where}: {problem.message}"
            )
        started = time.perf_counter()
        try:
            kwargs = _bind(tool.schema, args)
            async with asyncio.timeout(timeout_s):
                if inspect.iscoroutinefunction(tool.fn):
                    value = await tool.fn(**kwargs)
                else:
                    value = await asyncio.to_thread(tool.fn, **kwargs)
                    if inspect.isawaitable(value):  # a sync wrapper around a coroutine
                        value = await value
        except TimeoutError:
            log.warning("tool %s (call %s) timed out after %.1f s", call.name, call.id, timeout_s)
            return _error(call, f"tool {call.name!r} timed out after {timeout_s:g} s")
        except Exception as exc:
            log.warning("tool %s (call %s) failed", call.name, call.id, exc_info=True)
            return _error(call, f"tool {call.name!r} failed: {type(exc).__name__}: {exc}")
        log.debug("tool %s ran in %.1f ms", call.name, (time.perf_counter() - started) * 1000)
        try:
            return ToolResult(call.id, _to_text(value))
        except (TypeError, ValueError) as exc:  # e.g. non-string dict keys, cycles
            log.warning("tool %s returned a value that is not JSON: %s", call.name, exc)
            return _error(call, f"tool {call.name!r} returned a value that can't be sent: {exc}")


def _bind(schema: FunctionSchema, args: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for param in schema.params:
        if param.name in args:
            kwargs[param.name] = coerce(args[param.name], param.annotation)
        elif param.none_if_missing:
            kwargs[param.name] = None
    return kwargs


def _error(call: ToolCall, message: str) -> ToolResult:
    return ToolResult(call.id, json.dumps({"error": message}), is_error=True)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


default_registry = ToolRegistry()
"""The process-wide registry that `@function_tool` adds to."""


@overload
def function_tool[F: Callable[..., Any]](fn: F, /) -> F: ...


@overload
def function_tool[F: Callable[..., Any]](
    *, name: str | None = None, description: str | None = None
) -> Callable[[F], F]: ...


def function_tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Register a function in `default_registry`: `@function_tool` or `@function_tool(name=...)`."""
    if fn is not None:
        return default_registry.tool(fn)
    return default_registry.tool(name=name, description=description)
