"""Worker settings from the environment, parsed and validated in one place.

Every problem is collected and reported together so a misconfigured deployment fails once,
with the full list, before any connection is made.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.s2s import LATENCY_TARGETS, LatencyTarget

# Defaults that match `livekit-server --dev` and the repo's livekit.yaml.
DEFAULT_URL = "ws://localhost:7880"
DEFAULT_API_KEY = "devkey"
DEFAULT_API_SECRET = "secret"
DEFAULT_PROVIDER = "nova"
# Below 1.0 so a worker reports itself full before it is saturated; CPU of the whole
# machine counts, so a 2-core box still takes jobs while idle (livekit's 0.7 can refuse
# while job processes are still being prewarmed).
DEFAULT_LOAD_THRESHOLD = 0.9
DEFAULT_DRAIN_TIMEOUT_S = 30
DEFAULT_PARTICIPANT_GRACE_S = 10.0
DEFAULT_OUTPUT_QUEUE_MS = 200
DEFAULT_TOOL_TIMEOUT_S = 15.0
DEFAULT_HTTP_PORT = 8081
JOBS_PER_CPU = 10

_OFF = {"off", "none", "inf", "disabled"}


class SettingsError(ValueError):
    """One or more settings are invalid; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True, slots=True)
class Settings:
    livekit_url: str = DEFAULT_URL
    api_key: str = DEFAULT_API_KEY
    api_secret: str = field(default=DEFAULT_API_SECRET, repr=False)
    agent_name: str = ""
    provider: str = DEFAULT_PROVIDER
    # Provider-specific keys (Config.extra), e.g. {"region": "eu-north-1"}; may hold keys.
    provider_options: dict[str, Any] = field(default_factory=dict, repr=False)
    model: str | None = None
    voice: str | None = None
    instructions: str | None = None
    language: str | None = None
    latency_target: LatencyTarget | None = None
    greeting: str | None = None
    tools_modules: tuple[str, ...] = ()
    # None: livekit's convention (no limit in dev, DEFAULT_LOAD_THRESHOLD in start).
    load_threshold: float | None = None
    max_jobs: int = field(default_factory=lambda: _default_max_jobs())
    drain_timeout_s: int = DEFAULT_DRAIN_TIMEOUT_S
    participant_grace_s: float = DEFAULT_PARTICIPANT_GRACE_S
    output_queue_ms: int = DEFAULT_OUTPUT_QUEUE_MS
    tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    http_port: int | None = None
    idle_processes: int | None = None

    def threshold_for(self, *, dev: bool) -> float:
        """The load threshold to run with: explicit setting, else inf in dev, else default."""
        if self.load_threshold is not None:
            return self.load_threshold
        return math.inf if dev else DEFAULT_LOAD_THRESHOLD

    @property
    def drain_turn_timeout_s(self) -> float:
        """How long a draining job waits for the current turn: inside the worker's drain
        timeout, so the job closes cleanly before the worker gives up on it."""
        return max(1.0, self.drain_timeout_s - 3.0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        p = _Parser(env)
        latency = p.text("S2S_LATENCY_TARGET")
        if latency is not None:
            latency = latency.lower()
            if latency not in LATENCY_TARGETS:
                p.problems.append(
                    f"S2S_LATENCY_TARGET must be one of {', '.join(LATENCY_TARGETS)};"
                    f" got {latency!r}"
                )
                latency = None
        url = p.text("LIVEKIT_URL") or DEFAULT_URL
        if not url.startswith(("ws://", "wss://", "http://", "https://")):
            p.problems.append(
                f"LIVEKIT_URL must start with ws://, wss://, http:// or https://; got {url!r}"
            )
        tools = tuple(m.strip() for m in (p.text("S2S_TOOLS_MODULE") or "").split(",") if m.strip())
        settings = cls(
            livekit_url=url,
            api_key=p.text("LIVEKIT_API_KEY") or DEFAULT_API_KEY,
            api_secret=p.text("LIVEKIT_API_SECRET") or DEFAULT_API_SECRET,
            agent_name=p.text("AGENT_NAME") or p.text("LIVEKIT_AGENT_NAME") or "",
            provider=p.text("S2S_PROVIDER") or DEFAULT_PROVIDER,
            provider_options=p.json_object("S2S_PROVIDER_OPTIONS"),
            model=p.text("S2S_MODEL"),
            voice=p.text("S2S_VOICE"),
            instructions=p.text("S2S_INSTRUCTIONS"),
            language=p.text("S2S_LANGUAGE"),
            latency_target=latency,  # type: ignore[arg-type]
            greeting=p.text("S2S_GREETING"),
            tools_modules=tools,
            load_threshold=p.threshold("S2S_LOAD_THRESHOLD"),
            max_jobs=p.integer("S2S_MAX_JOBS", _default_max_jobs(), minimum=1),
            drain_timeout_s=p.integer("S2S_DRAIN_TIMEOUT", DEFAULT_DRAIN_TIMEOUT_S, minimum=1),
            participant_grace_s=p.number(
                "S2S_PARTICIPANT_GRACE", DEFAULT_PARTICIPANT_GRACE_S, minimum=0.0
            ),
            output_queue_ms=p.integer("S2S_OUTPUT_QUEUE_MS", DEFAULT_OUTPUT_QUEUE_MS, minimum=20),
            tool_timeout_s=p.number("S2S_TOOL_TIMEOUT", DEFAULT_TOOL_TIMEOUT_S, minimum=0.1),
            http_port=p.optional_integer("S2S_HTTP_PORT", minimum=0, maximum=65535),
            idle_processes=p.optional_integer("S2S_IDLE_PROCESSES", minimum=0),
        )
        if p.problems:
            raise SettingsError(p.problems)
        return settings


def _default_max_jobs() -> int:
    return max(2, (os.cpu_count() or 1) * JOBS_PER_CPU)


class _Parser:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def number(self, name: str, default: float, *, minimum: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number of seconds; got {raw!r}")
            return default
        if not math.isfinite(value) or value < minimum:
            self.problems.append(f"{name} must be a finite number >= {minimum}; got {raw!r}")
            return default
        return value

    def optional_integer(
        self, name: str, *, minimum: int, maximum: int | None = None
    ) -> int | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number; got {raw!r}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.problems.append(f"{name} must be {bound}; got {value}")
            return None
        return value

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self.optional_integer(name, minimum=minimum)
        return default if value is None else value

    def json_object(self, name: str) -> dict[str, Any]:
        raw = self.text(name)
        if raw is None:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            # The value may hold credentials: name the problem, never echo the text.
            self.problems.append(f"{name} is not valid JSON ({exc.msg} at char {exc.pos})")
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"{name} must be a JSON object; got {type(value).__name__}")
            return {}
        return value

    def threshold(self, name: str) -> float | None:
        raw = self.text(name)
        if raw is None:
            return None
        if raw.lower() in _OFF:
            return math.inf
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a load fraction in (0, 1] or 'off'; got {raw!r}")
            return None
        if not 0.0 < value <= 1.0:
            self.problems.append(f"{name} must be a load fraction in (0, 1] or 'off'; got {raw!r}")
            return None
        return value
