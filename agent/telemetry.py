"""OpenTelemetry traces and metrics for conversations.

Spans: `s2s.session` (one per Bridge.run), `s2s.turn` (one per assistant turn, from its first
event until its audio finished playing or was interrupted) and `s2s.tool_call`.

Metrics (attributes: provider, model):
  s2s.reply.latency      ms  from the user's final TRANSCRIPT (the provider's end-of-user-turn
                             signal) to the first reply audio handed to the sink; a turn whose
                             transcript arrives after its reply started is not measured
  s2s.bargein.flush      ms  INTERRUPTED seen by the bridge -> sink cleared
  s2s.tool.duration      ms  per tool call; attribute s2s.tool.outcome = ok | error | cancelled
  s2s.input.shed_frames      input frames dropped because the session could not keep up
  s2s.errors                 ERROR events and event-stream failures; attribute s2s.error.code

Attributes carry the provider, the model and the ConversationContext ids only, never keys,
tokens or tool arguments. With no SDK installed (no configure_from_env(), no providers passed
in) the API's no-op providers are used: nothing is exported and nothing breaks.
"""

from __future__ import annotations

import logging
import os
import time

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from agent.s2s import ConversationContext, S2SError, ToolCall

log = logging.getLogger(__name__)

SCOPE = "agent.bridge"
_FLUSH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0)
_configured = False


class Telemetry:
    """Spans and metrics of one conversation. Pass providers to record somewhere specific
    (tests use the SDK's in-memory exporters); otherwise the global ones are used."""

    def __init__(
        self,
        *,
        provider: str = "",
        model: str = "",
        context: ConversationContext | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        ctx = context or ConversationContext()
        named = {
            "s2s.provider": provider,
            "s2s.model": model,
            "s2s.session_id": ctx.session_id,
            "s2s.conversation_id": ctx.conversation_id,
            "s2s.user_id": ctx.user_id,
        }
        self.attributes: dict[str, str] = {k: v for k, v in named.items() if v}
        self.metric_attributes: dict[str, str] = {"s2s.provider": provider, "s2s.model": model}
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
        self._reply_latency = meter.create_histogram(
            "s2s.reply.latency", unit="ms", description="end of user speech to first reply audio"
        )
        self._flush = meter.create_histogram(
            "s2s.bargein.flush",
            unit="ms",
            description="barge-in: INTERRUPTED seen to sink cleared",
            explicit_bucket_boundaries_advisory=_FLUSH_BUCKETS,
        )
        self._tool_duration = meter.create_histogram(
            "s2s.tool.duration", unit="ms", description="tool call run time"
        )
        self._shed = meter.create_counter(
            "s2s.input.shed_frames", unit="{frame}", description="input frames dropped"
        )
        self._errors = meter.create_counter(
            "s2s.errors", unit="{error}", description="session errors"
        )
        self._session: Span | None = None
        self._turns: dict[str | None, Span] = {}

    # -- spans ------------------------------------------------------------------------------

    def start_session(self) -> None:
        if self._session is None:
            self._session = self._tracer.start_span("s2s.session", attributes=self.attributes)

    def end_session(self) -> None:
        for turn_id in list(self._turns):
            self.end_turn(turn_id)
        if self._session is not None:
            self._session.end()
            self._session = None

    def start_turn(self, turn_id: str | None) -> None:
        if turn_id in self._turns:
            return
        attributes = dict(self.attributes)
        if turn_id is not None:
            attributes["s2s.turn_id"] = turn_id
        self._turns[turn_id] = self._tracer.start_span(
            "s2s.turn", context=self._parent(None), attributes=attributes
        )

    def end_turn(
        self,
        turn_id: str | None,
        *,
        interrupted: bool = False,
        played_ms: float | None = None,
    ) -> None:
        span = self._turns.pop(turn_id, None)
        if span is None:
            return
        span.set_attribute("s2s.interrupted", interrupted)
        if played_ms is not None:
            span.set_attribute("s2s.played_ms", round(played_ms, 1))
        span.end()

    def start_tool(self, call: ToolCall, turn_id: str | None) -> Span:
        attributes = {**self.attributes, "s2s.tool.name": call.name, "s2s.tool.call_id": call.id}
        return self._tracer.start_span(
            "s2s.tool_call", context=self._parent(turn_id), attributes=attributes
        )

    def end_tool(self, span: Span, call: ToolCall, started: float, outcome: str) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        span.set_attribute("s2s.tool.outcome", outcome)
        if outcome == "error":
            span.set_status(Status(StatusCode.ERROR, "tool returned an error"))
        span.end()
        self._tool_duration.record(
            elapsed_ms,
            {**self.metric_attributes, "s2s.tool.name": call.name, "s2s.tool.outcome": outcome},
        )

    # -- metrics ----------------------------------------------------------------------------

    def reply_latency(self, ms: float) -> None:
        self._reply_latency.record(ms, self.metric_attributes)

    def flush_latency(self, ms: float) -> None:
        self._flush.record(ms, self.metric_attributes)

    def shed(self, frames: int) -> None:
        self._shed.add(frames, self.metric_attributes)

    def error(self, error: S2SError) -> None:
        self._errors.add(1, {**self.metric_attributes, "s2s.error.code": error.code})
        if self._session is not None:
            # Code and type only: provider messages are not ours to vouch for.
            self._session.add_event(
                "s2s.error",
                {
                    "s2s.error.code": error.code,
                    "s2s.error.type": type(error).__name__,
                    "s2s.error.recoverable": error.recoverable,
                },
            )

    def _parent(self, turn_id: str | None) -> Context | None:
        span = self._turns.get(turn_id) if turn_id in self._turns else self._session
        return trace.set_span_in_context(span) if span is not None else None


def configure_from_env() -> bool:
    """Install SDK providers exporting over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set
    and the exporter package (extra `otlp`) is installed; otherwise do nothing. Returns
    whether exporting was configured. Standard OTEL_* variables (headers, service name,
    resource attributes) are read by the SDK."""
    global _configured
    if _configured:
        return True
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed")
        return False
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": "s2s-voice-agent"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    _configured = True
    log.info("OpenTelemetry export configured (OTLP/HTTP)")
    return True
