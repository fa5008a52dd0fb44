"""Golden wire fixtures for the sans-I/O Nova protocol (tests/nova/golden/*.json)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.s2s import EventType, SessionEvent, ToolDefinition
from plugins.nova.protocol import (
    CompletionEnded,
    CompletionStarted,
    InferenceConfig,
    InputBuilder,
    Output,
    OutputParser,
    Usage,
    is_interrupted_marker,
    tool_arguments,
    tool_result_payload,
)

GOLDEN = Path(__file__).parent / "golden"
pytestmark = pytest.mark.timeout(10)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    return data


def _render(out: Output) -> dict[str, Any]:
    """An output as the fixtures write it."""
    if isinstance(out, Usage):
        return {
            "note": "usage",
            "input_speech": out.input_speech,
            "input_text": out.input_text,
            "output_speech": out.output_speech,
            "output_text": out.output_text,
            "total_input": out.total_input,
            "total_output": out.total_output,
            "total": out.total,
        }
    if isinstance(out, CompletionStarted):
        return {
            "note": "completion_start",
            "completion_id": out.completion_id,
            "session_id": out.session_id,
        }
    if isinstance(out, CompletionEnded):
        return {"note": "completion_end", "stop_reason": out.stop_reason}
    assert isinstance(out, SessionEvent)
    row: dict[str, Any] = {"type": out.type.value}
    if out.type is EventType.ERROR:
        assert out.error is not None
        row |= {"code": out.error.code, "recoverable": out.error.recoverable}
        row["message"] = out.error.message
        return row
    if out.type is EventType.TOOL_CALL:
        assert out.tool_call is not None
        row |= {
            "id": out.tool_call.id,
            "name": out.tool_call.name,
            "arguments": out.tool_call.arguments,
        }
    if out.audio is not None:
        row["audio_b64"] = base64.b64encode(out.audio).decode()
    if out.text is not None:
        row["text"] = out.text
        row["final"] = out.final
    row["turn_id"] = out.turn_id
    return row


def _matches(got: dict[str, Any], want: dict[str, Any]) -> bool:
    want = dict(want)
    needle = want.pop("message_contains", None)
    if needle is not None and needle not in got.get("message", ""):
        return False
    got = {k: v for k, v in got.items() if k != "message" or "message" in want}
    return got == want


OUTPUT_FIXTURES = sorted(p.name for p in GOLDEN.glob("output_*.json"))
INPUT_FIXTURES = sorted(p.name for p in GOLDEN.glob("input_*.json"))


def test_fixtures_present() -> None:
    assert len(OUTPUT_FIXTURES) >= 7 and len(INPUT_FIXTURES) >= 2


@pytest.mark.parametrize("name", OUTPUT_FIXTURES)
def test_output_golden(name: str, caplog: pytest.LogCaptureFixture) -> None:
    fixture = _load(name)
    parser = OutputParser()
    got: list[dict[str, Any]] = []
    caplog.set_level(logging.DEBUG, logger="plugins.nova.protocol")
    for event in fixture["events"]:
        data = event["raw"] if "raw" in event else json.dumps(event)
        got.extend(_render(out) for out in parser.feed(data.encode()))
    want = fixture["expect"]
    assert len(got) == len(want), json.dumps(got, indent=1)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert _matches(g, w), f"output {i}: got {g}, want {w}"


def test_every_event_type_is_covered() -> None:
    """The fixtures exercise every server event name and every SessionEvent type the
    parser can produce."""
    names: set[str] = set()
    types: set[str] = set()
    for name in OUTPUT_FIXTURES:
        fixture = _load(name)
        for event in fixture["events"]:
            if "event" in event:
                names.update(event["event"])
        types.update(row.get("type") or row["note"] for row in fixture["expect"])
    assert {
        "completionStart",
        "contentStart",
        "textOutput",
        "audioOutput",
        "toolUse",
        "contentEnd",
        "usageEvent",
        "completionEnd",
    } <= names
    assert {
        "transcript",
        "text_output",
        "audio_output",
        "tool_call",
        "turn_end",
        "interrupted",
        "error",
        "usage",
        "completion_start",
        "completion_end",
    } <= types


def test_unknown_event_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="plugins.nova.protocol")
    assert OutputParser().feed(b'{"event":{"brandNewEvent":{"x":1}}}') == []
    assert any("brandNewEvent" in r.getMessage() for r in caplog.records)


def _run_steps(fixture: dict[str, Any]) -> list[dict[str, Any]]:
    ids = iter(fixture["ids"])
    builder = InputBuilder(new_id=lambda: next(ids))
    out: list[bytes] = []
    for step in fixture["steps"]:
        op = step["op"]
        if op == "session_start":
            inference = InferenceConfig(step["max_tokens"], step["top_p"], step["temperature"])
            out.append(builder.session_start(inference, endpointing=step.get("endpointing")))
        elif op == "prompt_start":
            tools = [ToolDefinition(**t) for t in step["tools"]]
            out.append(
                builder.prompt_start(voice=step["voice"], tools=tools, choice=step.get("choice"))
            )
        elif op == "text":
            out.extend(
                builder.text_block(step["role"], step["text"], interactive=step["interactive"])
            )
        elif op == "audio_start":
            out.append(builder.audio_start())
        elif op == "audio":
            out.append(builder.audio_input(base64.b64decode(step["pcm_b64"])))
        elif op == "tool_result":
            payload = tool_result_payload(step["content"], is_error=step["is_error"])
            out.extend(builder.tool_result_block(step["tool_use_id"], payload))
        elif op == "audio_end":
            out.append(builder.audio_end())
        elif op == "prompt_end":
            out.append(builder.prompt_end())
        elif op == "session_end":
            out.append(builder.session_end())
        else:
            raise AssertionError(f"unknown op {op}")
    return [json.loads(b) for b in out]


@pytest.mark.parametrize("name", INPUT_FIXTURES)
def test_input_golden(name: str) -> None:
    fixture = _load(name)
    got = _run_steps(fixture)
    want = fixture["expect"]
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"event {i}: got {g}, want {w}"


def test_every_text_content_start_has_text_configuration() -> None:
    for name in INPUT_FIXTURES:
        for event in _run_steps(_load(name)):
            start = event["event"].get("contentStart")
            if start and start["type"] == "TEXT":
                assert start["textInputConfiguration"] == {"mediaType": "text/plain"}


def test_audio_input_template_is_valid_json_for_odd_names() -> None:
    builder = InputBuilder('pr"ompt\\1', new_id=lambda: 'con"tent')
    builder.audio_start()
    event = json.loads(builder.audio_input(b"\x01\x02\x03\x04"))
    body = event["event"]["audioInput"]
    assert body["promptName"] == 'pr"ompt\\1' and body["contentName"] == 'con"tent'
    assert base64.b64decode(body["content"]) == b"\x01\x02\x03\x04"


def test_audio_before_start_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        InputBuilder().audio_input(b"\x00\x00")
    with pytest.raises(RuntimeError):
        InputBuilder().audio_end()


def test_frames_queued_before_audio_end_still_encode() -> None:
    """A writer encodes queued frames lazily, after the closing contentEnd was built."""
    builder = InputBuilder(new_id=iter(["p", "a"]).__next__)
    builder.audio_start()
    end = json.loads(builder.audio_end())
    frame = json.loads(builder.audio_input(b"\x01\x00"))
    assert frame["event"]["audioInput"]["contentName"] == "a"
    assert end["event"]["contentEnd"]["contentName"] == "a"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ('{"a":1}', '{"a":1}'),
        (json.dumps('{"a": 1}'), '{"a": 1}'),
        ("", "{}"),
        ("not json", "not json"),
        (json.dumps("plain string"), json.dumps("plain string")),
        ({"a": 1}, '{"a":1}'),
    ],
)
def test_tool_arguments(raw: Any, want: str) -> None:
    assert tool_arguments(raw) == want


@pytest.mark.parametrize(
    ("content", "is_error", "want"),
    [
        ('{"ok":true}', False, {"ok": True}),
        ("42", False, {"result": 42}),
        ("oops", True, {"error": "oops"}),
        ('{"code":7}', True, {"error": {"code": 7}}),
        ('{"error":"bad"}', True, {"error": "bad"}),
        ("", False, {"result": ""}),
    ],
)
def test_tool_result_payload_is_always_a_json_object(
    content: str, is_error: bool, want: dict[str, Any]
) -> None:
    assert json.loads(tool_result_payload(content, is_error=is_error)) == want


@pytest.mark.parametrize(
    ("text", "marker"),
    [
        ('{ "interrupted" : true }', True),
        ('{"interrupted":true}', True),
        ('{"interrupted": false}', False),
        ("I was interrupted", False),
        ("{interrupted}", False),
    ],
)
def test_interrupted_marker(text: str, marker: bool) -> None:
    assert is_interrupted_marker(text) is marker


def test_end_turn_closes_open_turn_once() -> None:
    parser = OutputParser()
    parser.feed(
        json.dumps(
            {"event": {"contentStart": {"contentId": "a", "type": "AUDIO", "role": "ASSISTANT"}}}
        )
    )
    assert parser.turn_open
    ends = parser.end_turn()
    assert [e.type for e in ends] == [EventType.TURN_END]
    assert parser.end_turn() == []
    # A late END_TURN for the closed turn does not emit a second TURN_END.
    late = parser.feed(
        json.dumps({"event": {"contentEnd": {"contentId": "a", "stopReason": "END_TURN"}}})
    )
    assert late == []
