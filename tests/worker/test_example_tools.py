from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from agent.example_tools import calculate, current_time, evaluate
from agent.s2s import ToolCall
from agent.tools import ToolRegistry


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(12.5 * 4) / 3", pytest.approx(16.6667, rel=1e-4)),
        ("2 ** 10", 1024),
        ("2^8", 256),
        ("-3 + +5", 2),
        ("17 // 5 + 17 % 5", 5),
        ("sqrt(16) + abs(-2)", 6),
        ("round(2.567, 2)", 2.57),
        ("max(3, 9, 4) - min(3, 9, 4)", 6),
    ],
)
def test_arithmetic(expression: str, value: object) -> None:
    assert evaluate(expression) == value


def test_integral_results_read_as_integers() -> None:
    assert calculate("10 / 4 * 2") == {"expression": "10 / 4 * 2", "result": 5}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('id')", "unsupported element"),
        ("(1).__class__", "unsupported element"),
        ("open('/etc/passwd')", "unsupported element"),
        ("x + 1", "unsupported element"),
        ("[1, 2]", "unsupported element"),
        ("'a' * 3", "unsupported element"),
        ("9 ** 9 ** 9", "exponent larger than"),
        ("10 ** 200", "too large"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "sqrt"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 201, "longer than 200"),
        ("True + 1", "unsupported element"),
    ],
)
def test_unsafe_or_bad_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(expression)


def test_current_time_in_a_zone() -> None:
    result = current_time("Asia/Tokyo")
    assert result["timezone"] == "Asia/Tokyo"
    assert result["utc_offset"] == "+0900"
    now = datetime.fromisoformat(result["iso"])
    assert abs(now - datetime.now(now.tzinfo)) < timedelta(seconds=5)


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        current_time("Mars/Olympus")


async def test_tools_load_into_a_registry_and_run() -> None:
    registry = ToolRegistry()
    added = registry.load_module("agent.example_tools")
    assert {"current_time", "calculate"} <= set(registry.names()) | set(added)
    definitions = {d.name: d for d in registry.definitions()}
    assert definitions["calculate"].input_schema["required"] == ["expression"]
    assert "time zone" in definitions["current_time"].description

    ok = await registry.run(ToolCall("c1", "calculate", '{"expression": "6 * 7"}'), timeout_s=2)
    assert json.loads(ok.content)["result"] == 42 and not ok.is_error
    bad = await registry.run(
        ToolCall("c2", "calculate", '{"expression": "__import__(\\"os\\")"}'), timeout_s=2
    )
    assert bad.is_error and "unsupported element" in bad.content
