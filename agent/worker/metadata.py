"""Per-job options: the worker's settings overridden by the job's dispatch metadata (JSON).

Dispatch metadata is what an app passes when it dispatches the agent (token room config
or the AgentDispatch API), e.g. `{"voice": "tiffany", "greeting": "Say hello."}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agent.s2s import LATENCY_TARGETS, LatencyTarget

from .settings import Settings

log = logging.getLogger(__name__)

# Keys the metadata may set; every value is a string.
METADATA_KEYS = (
    "provider",
    "model",
    "voice",
    "instructions",
    "language",
    "latency_target",
    "participant_identity",
    "greeting",
)
MAX_METADATA_BYTES = 64 * 1024


class MetadataError(ValueError):
    """The job's metadata can't be used; the message says why (and is safe to log)."""


@dataclass(frozen=True, slots=True)
class JobOptions:
    provider: str
    model: str | None = None
    voice: str | None = None
    instructions: str | None = None
    language: str | None = None
    latency_target: LatencyTarget | None = None
    participant_identity: str | None = None
    greeting: str | None = None
    provider_options: dict[str, Any] = field(default_factory=dict, repr=False)


def job_options(
    settings: Settings,
    metadata: str | None,
    *,
    available_providers: Callable[[], list[str]] | None = None,
) -> JobOptions:
    """Merge `metadata` over `settings`. Raises MetadataError for bad JSON, a non-object,
    a wrong type, an unknown latency target or (when `available_providers` is given) an
    unknown provider. Unknown keys are logged and ignored: apps may carry their own data."""
    overrides = parse_metadata(metadata)
    options = JobOptions(
        provider=overrides.get("provider") or settings.provider,
        model=overrides.get("model", settings.model),
        voice=overrides.get("voice", settings.voice),
        instructions=overrides.get("instructions", settings.instructions),
        language=overrides.get("language", settings.language),
        latency_target=overrides.get("latency_target", settings.latency_target),  # type: ignore[arg-type]
        participant_identity=overrides.get("participant_identity"),
        greeting=overrides.get("greeting", settings.greeting),
    )
    if options.provider == settings.provider and settings.provider_options:
        # S2S_PROVIDER_OPTIONS belong to S2S_PROVIDER; another provider gets its defaults.
        options = replace(options, provider_options=dict(settings.provider_options))
    if available_providers is not None:
        names = available_providers()
        if options.provider not in names:
            raise MetadataError(
                f"unknown provider {options.provider!r} in job metadata;"
                f" available: {', '.join(names) or 'none'}"
            )
    return options


def parse_metadata(metadata: str | None) -> dict[str, str | None]:
    """The recognised keys of a metadata JSON object. Empty metadata means no overrides.
    A JSON null or empty string for a key clears the setting (provider default)."""
    if metadata is None or not metadata.strip():
        return {}
    if len(metadata.encode()) > MAX_METADATA_BYTES:
        raise MetadataError(f"job metadata is larger than {MAX_METADATA_BYTES} bytes")
    try:
        data: Any = json.loads(metadata)
    except json.JSONDecodeError as exc:
        raise MetadataError(
            f"job metadata is not valid JSON: {exc.msg} at char {exc.pos}"
        ) from None
    if not isinstance(data, dict):
        raise MetadataError(f"job metadata must be a JSON object; got {type(data).__name__}")
    unknown = sorted(k for k in data if k not in METADATA_KEYS)
    if unknown:
        log.warning("ignoring unknown job metadata key(s): %s", ", ".join(unknown))
    out: dict[str, str | None] = {}
    for key in METADATA_KEYS:
        if key not in data:
            continue
        value = data[key]
        if value is None:
            out[key] = None
            continue
        if not isinstance(value, str):
            raise MetadataError(
                f"job metadata {key!r} must be a string; got {type(value).__name__}"
            )
        value = value.strip()
        out[key] = value or None
    latency = out.get("latency_target")
    if latency is not None and latency not in LATENCY_TARGETS:
        raise MetadataError(
            f"job metadata 'latency_target' must be one of {', '.join(LATENCY_TARGETS)};"
            f" got {latency!r}"
        )
    return out
