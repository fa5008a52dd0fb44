"""OpenTelemetry metrics for Nova sessions (a no-op unless the app installs a MeterProvider)."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from .protocol import Usage

PROVIDER = "nova"


class Telemetry:
    """Counters and histograms with provider/model attributes.

    Instruments come from the global MeterProvider when a session starts, so an app that
    installs one later still gets numbers for later sessions.
    """

    def __init__(self, model: str, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter("plugins.nova", meter_provider=meter_provider)
        self._attrs: dict[str, str] = {"provider": PROVIDER, "model": model}
        self._tokens = meter.create_counter(
            "s2s.tokens", unit="{token}", description="Tokens the model reported as used"
        )
        self._renewals = meter.create_counter(
            "s2s.renewals", description="Streams replaced before the connection limit"
        )
        self._reconnects = meter.create_counter(
            "s2s.reconnects", description="Reconnects after an unexpected stream end"
        )
        self._errors = meter.create_counter("s2s.errors", description="ERROR events emitted")
        self._dropped = meter.create_counter(
            "s2s.input_frames_dropped",
            unit="{frame}",
            description="User audio frames shed because the send queue was full",
        )
        self._handover = meter.create_histogram(
            "s2s.renewal.handover", unit="ms", description="Time to switch to the next stream"
        )

    def _with(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**self._attrs, **extra}

    def usage(self, usage: Usage) -> None:
        for direction, kind, value in (
            ("input", "speech", usage.input_speech),
            ("input", "text", usage.input_text),
            ("output", "speech", usage.output_speech),
            ("output", "text", usage.output_text),
        ):
            if value > 0:
                self._tokens.add(value, self._with({"direction": direction, "kind": kind}))

    def renewal(self, handover_ms: float, reason: str) -> None:
        attrs = self._with({"reason": reason})
        self._renewals.add(1, attrs)
        self._handover.record(handover_ms, attrs)

    def reconnect(self, code: str) -> None:
        self._reconnects.add(1, self._with({"code": code}))

    def error(self, code: str, recoverable: bool) -> None:
        self._errors.add(1, self._with({"code": code, "recoverable": str(recoverable).lower()}))

    def dropped(self, frames: int) -> None:
        self._dropped.add(frames, self._attrs)
