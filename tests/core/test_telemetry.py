"""Telemetry: spans and metrics reach in-memory exporters with the right attributes, no secrets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agent.telemetry as telemetry_module
from agent.audio import MemorySink
from agent.bridge import Bridge
from agent.s2s import Config, ConversationContext, ProviderError
from agent.telemetry import Telemetry, configure_from_env
from agent.tools import ToolRegistry
from tests.support.scripted import ScriptedSession

from .helpers import frames, running, sine, until

pytestmark = pytest.mark.timeout(20)

SECRET = "sk-live-SECRET-0123456789"
CONTEXT = ConversationContext(session_id="sess-1", conversation_id="conv-1", user_id="user-1")


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, Telemetry]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tel = Telemetry(
        provider="scripted",
        model="model-x",
        context=CONTEXT,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    yield exporter, reader, tel
    tracer_provider.shutdown()
    meter_provider.shutdown()


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


def all_attribute_values(spans: tuple[ReadableSpan, ...], points: dict[str, list[Any]]) -> str:
    values = [str(v) for s in spans for v in (s.attributes or {}).values()]
    values += [str(v) for s in spans for e in s.events for v in (e.attributes or {}).values()]
    values += [str(v) for ps in points.values() for p in ps for v in p.attributes.values()]
    return " ".join(values)


async def test_conversation_spans_and_metrics(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader, Telemetry],
) -> None:
    exporter, reader, tel = otel
    # The session was configured with a key; none of it may reach telemetry.
    _ = Config(model="model-x", extra={"api_key": SECRET})
    reg = ToolRegistry()

    @reg.tool
    async def lookup(city: str) -> str:
        return city

    sink = MemorySink(24000, queue_ms=100)
    session = ScriptedSession(send_delay_s=0.05)
    source = frames(sine(16000, 16000).tobytes(), 16000)  # 50 frames at once: some are shed
    bridge = Bridge(session, sink, source=source, tools=reg, telemetry=tel, max_input_backlog_ms=40)
    async with running(bridge):
        await session.transcript("weather in Oslo?", final=True)
        await session.tool_call("lookup", {"city": "Oslo"}, call_id="c1", turn_id="t1")
        await session.wait_for(lambda s: len(s.tool_results) == 1)
        await session.reply(60, "t1")
        await until(lambda: bridge.state == "listening" and sink.played_ms >= 59, within=2)
        await session.reply(2000, "t2")
        await until(lambda: sink.played_ms >= 60 + 100)  # 100 ms of t2 heard
        await session.interrupted("t2")
        await until(lambda: session.interrupts != [])
        await session.error(ProviderError("throttled", code="throttle", recoverable=True))
        await until(lambda: bridge.shed_frames > 0)
        await asyncio.sleep(0.05)

    spans = exporter.get_finished_spans()
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    [session_span] = by_name["s2s.session"]
    assert dict(session_span.attributes or {}) == {
        "s2s.provider": "scripted",
        "s2s.model": "model-x",
        "s2s.session_id": "sess-1",
        "s2s.conversation_id": "conv-1",
        "s2s.user_id": "user-1",
    }
    assert [e.name for e in session_span.events] == ["s2s.error"]
    assert session_span.events[0].attributes == {
        "s2s.error.code": "throttle",
        "s2s.error.type": "ProviderError",
        "s2s.error.recoverable": True,
    }
    turns = {s.attributes["s2s.turn_id"]: s for s in by_name["s2s.turn"] if s.attributes}
    assert set(turns) == {"t1", "t2"}
    assert turns["t1"].attributes is not None and turns["t2"].attributes is not None
    assert turns["t1"].attributes["s2s.interrupted"] is False
    assert turns["t1"].attributes["s2s.played_ms"] == pytest.approx(60, abs=1)
    assert turns["t2"].attributes["s2s.interrupted"] is True
    played_t2 = turns["t2"].attributes["s2s.played_ms"]
    assert isinstance(played_t2, float) and 80 <= played_t2 <= 200
    [tool_span] = by_name["s2s.tool_call"]
    assert tool_span.attributes is not None
    assert tool_span.attributes["s2s.tool.name"] == "lookup"
    assert tool_span.attributes["s2s.tool.outcome"] == "ok"
    # Nesting: tool call inside turn t1 inside the session.
    assert session_span.context is not None and turns["t1"].context is not None
    assert turns["t1"].parent is not None
    assert turns["t1"].parent.span_id == session_span.context.span_id
    assert tool_span.parent is not None
    assert tool_span.parent.span_id == turns["t1"].context.span_id

    points = metric_points(reader)
    [latency] = points["s2s.reply.latency"]
    assert latency.count == 1 and latency.sum > 0  # transcript -> first audio of t1
    [flush] = points["s2s.bargein.flush"]
    assert flush.count == 1 and flush.sum < 20
    [tool] = points["s2s.tool.duration"]
    assert tool.count == 1 and tool.attributes["s2s.tool.outcome"] == "ok"
    [shed] = points["s2s.input.shed_frames"]
    assert shed.value == bridge.shed_frames > 0
    [errors] = points["s2s.errors"]
    assert errors.value == 1 and errors.attributes["s2s.error.code"] == "throttle"
    assert latency.attributes == {"s2s.provider": "scripted", "s2s.model": "model-x"}

    assert SECRET not in all_attribute_values(spans, points)
    assert SECRET not in repr(_)  # and Config's repr hides it too


async def test_tool_errors_and_cancellations_are_labelled(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader, Telemetry],
) -> None:
    exporter, reader, tel = otel
    reg = ToolRegistry()

    @reg.tool
    async def hang() -> None:
        await asyncio.sleep(10)

    session = ScriptedSession()
    bridge = Bridge(session, MemorySink(clock="instant"), tools=reg, telemetry=tel)
    async with running(bridge):
        await session.tool_call("hang", {}, call_id="c1")
        await session.tool_call("missing", {}, call_id="c2")
        await session.wait_for(lambda s: len(s.tool_results) == 1)
        await asyncio.sleep(0.02)
        await session.cancel_tool_calls("c1")
        await until(lambda: len(exporter.get_finished_spans()) == 2)
    outcomes = {
        s.attributes["s2s.tool.call_id"]: s.attributes["s2s.tool.outcome"]
        for s in exporter.get_finished_spans()
        if s.name == "s2s.tool_call" and s.attributes
    }
    assert outcomes == {"c1": "cancelled", "c2": "error"}
    kinds = sorted(
        p.attributes["s2s.tool.outcome"] for p in metric_points(reader)["s2s.tool.duration"]
    )
    assert kinds == ["cancelled", "error"]


async def test_default_telemetry_is_a_harmless_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert configure_from_env() is False
    tel = Telemetry(provider="p")  # global (no-op unless configured) providers
    tel.start_session()
    tel.start_turn("t")
    tel.flush_latency(1.0)
    tel.end_turn("t", interrupted=True, played_ms=3.0)
    tel.end_session()
    session, sink = ScriptedSession(), MemorySink(clock="instant")
    bridge = Bridge(session, sink)  # its own Telemetry on the global providers
    async with running(bridge):
        await session.reply(40, "t1")
        await until(lambda: len(sink.played) == 40 * 48)
        await session.interrupted("t1")
        await until(lambda: session.interrupts == [40])


def test_configure_from_env_installs_otlp_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: dict[str, Any] = {}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setattr(telemetry_module, "_configured", False)
    monkeypatch.setattr(trace, "set_tracer_provider", lambda p: installed.setdefault("trace", p))
    monkeypatch.setattr(metrics, "set_meter_provider", lambda p: installed.setdefault("meter", p))
    assert configure_from_env() is True
    try:
        assert isinstance(installed["trace"], TracerProvider)
        assert isinstance(installed["meter"], MeterProvider)
        resource = installed["trace"].resource
        assert resource.attributes["service.name"] == "s2s-voice-agent"
        assert configure_from_env() is True  # once only
    finally:
        installed["trace"].shutdown()
        installed["meter"].shutdown()
