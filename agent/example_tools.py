"""Two tools voice agents genuinely need: the current date and time, and exact arithmetic.

Enable them with `S2S_TOOLS_MODULE=agent.example_tools`; copy this file as a template for
your own (any importable module of `@function_tool` functions works).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.tools import function_tool

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e100


@function_tool
def current_time(timezone: str = "UTC") -> dict[str, str]:
    """Get the current date and time in a time zone.

    Args:
        timezone: An IANA time zone name such as "Europe/Paris" or "America/New_York".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {timezone!r}; use an IANA name like 'Europe/London'"
        ) from None
    now = datetime.now(zone)
    return {
        "timezone": timezone,
        "iso": now.isoformat(timespec="seconds"),
        "date": now.strftime("%A %d %B %Y"),
        "time": now.strftime("%H:%M"),
        "utc_offset": now.strftime("%z"),
    }


@function_tool
def calculate(expression: str) -> dict[str, Any]:
    """Evaluate an arithmetic expression exactly, e.g. "(12.5 * 4) / 3" or "sqrt(2) ** 3".

    Supports + - * / // % ** and parentheses, and the functions sqrt, abs, round, min, max.

    Args:
        expression: The arithmetic expression to evaluate.
    """
    value = evaluate(expression)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return {"expression": expression, "result": value}


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
}


def evaluate(expression: str) -> int | float:
    """Evaluate arithmetic by walking its syntax tree: no eval, no names, no attributes, and
    bounded exponents and magnitudes so a request can't pin the CPU or exhaust memory."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    return _eval(tree.body)


def _eval(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent larger than {MAX_EXPONENT}")
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ValueError("division by zero") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_eval(node.operand)))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_eval(arg) for arg in node.args]
        try:
            return _bounded(_FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{node.func.id}: {exc}") from None
    raise ValueError(f"unsupported element in expression: {ast.unparse(node)!r}")


def _bounded(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ValueError("the result is not a real number")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError("the result is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("the result is not finite")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError("the result is too large")
    return value
