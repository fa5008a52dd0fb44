"""Nova settings: the neutral Config plus `extra` keys, validated before any network I/O."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.s2s import Config, ConfigError, ToolDefinition

from .credentials import StaticKeys
from .voices import (
    DEFAULT_MODEL,
    DEFAULT_VOICE,
    ModelSpec,
    model_spec,
    validate_voice,
    voice_for_language,
    voice_locale,
)

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
DEFAULT_INSTRUCTIONS = (
    "You are a friendly voice assistant. Keep your replies short and conversational."
)
# latency_target → Nova 2 endpointing sensitivity: HIGH ends the user's turn soonest.
ENDPOINTING: dict[str, str] = {"low": "HIGH", "medium": "MEDIUM", "high": "LOW"}

_FLOAT_KEYS: dict[str, tuple[float, float, float]] = {
    # name: (default, min, max)
    "top_p": (0.9, 0.0, 1.0),
    "temperature": (0.7, 0.0, 1.0),
    "renewal_after_s": (360.0, 0.1, 3600.0),
    "max_session_s": (450.0, 0.2, 3600.0),
    "renewal_buffer_s": (3.0, 0.0, 30.0),
    "standby_max_age_s": (25.0, 0.5, 600.0),
    "retry_base_s": (0.25, 0.0, 60.0),
    "retry_max_s": (5.0, 0.0, 600.0),
    "retry_jitter": (0.25, 0.0, 1.0),
    "reconnect_buffer_s": (5.0, 0.0, 60.0),
    "connect_timeout_s": (10.0, 0.1, 120.0),
    "close_timeout_s": (2.0, 0.0, 60.0),
    # A reply is due and the stream has sent nothing for this long: treat it as dead.
    "stall_timeout_s": (20.0, 0.1, 600.0),
}
_INT_KEYS: dict[str, tuple[int, int, int]] = {
    "max_tokens": (1024, 1, 10000),
    "max_retries": (5, 0, 100),
    "event_queue_size": (512, 8, 100000),
    "send_backlog_frames": (64, 2, 10000),
    "max_coalesce_frames": (2, 1, 16),
}
_STR_KEYS = ("region", "base_url", "profile", "tool_choice")
INPUT_FRAME_MS = (32, 64)  # AWS's samples send 512 or 1024 samples per audioInput
_SECRET_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_BOOL_KEYS = {"share_client": True}
_KNOWN = (
    set(_FLOAT_KEYS)
    | set(_INT_KEYS)
    | set(_STR_KEYS)
    | set(_SECRET_KEYS)
    | set(_BOOL_KEYS)
    | {"input_frame_ms"}
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for reconnects."""

    max_retries: int = 5
    base_s: float = 0.25
    max_s: float = 5.0
    jitter: float = 0.25

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait before retry `attempt` (0-based); `rand` in [0, 1)."""
        raw = min(self.max_s, self.base_s * float(2 ** min(attempt, 30)))
        return max(0.0, raw * (1.0 + self.jitter * (2.0 * rand - 1.0)))


@dataclass(frozen=True, slots=True)
class NovaSettings:
    """Everything one session needs. Built by `resolve_settings`; secrets stay out of repr."""

    model_id: str
    spec: ModelSpec
    voice: str
    instructions: str
    tools: tuple[ToolDefinition, ...]
    tool_choice: str | None
    language: str | None
    endpointing: str | None
    region: str
    endpoint: str
    max_tokens: int
    top_p: float
    temperature: float
    renewal_after_s: float
    max_session_s: float
    renewal_buffer_s: float
    standby_max_age_s: float
    retry: RetryPolicy
    reconnect_buffer_s: float
    connect_timeout_s: float
    close_timeout_s: float
    stall_timeout_s: float
    event_queue_size: int
    send_backlog_frames: int
    max_coalesce_frames: int
    input_frame_ms: int
    share_client: bool
    profile: str | None
    keys: StaticKeys | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"NovaSettings(model={self.model_id!r}, voice={self.voice!r},"
            f" region={self.region!r}, endpoint={self.endpoint!r},"
            f" tools={[t.name for t in self.tools]}, endpointing={self.endpointing!r},"
            f" renewal_after_s={self.renewal_after_s}, max_session_s={self.max_session_s},"
            f" credentials={'static' if self.keys else 'chain'})"
        )


def _float(extra: Mapping[str, Any], key: str) -> float:
    default, low, high = _FLOAT_KEYS[key]
    value = extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"extra[{key!r}] must be a number; got {type(value).__name__}")
    number = float(value)
    if not low <= number <= high:
        raise ConfigError(f"extra[{key!r}] must be between {low} and {high}; got {value}")
    return number


def _int(extra: Mapping[str, Any], key: str) -> int:
    default, low, high = _INT_KEYS[key]
    value = extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"extra[{key!r}] must be an integer; got {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigError(f"extra[{key!r}] must be between {low} and {high}; got {value}")
    return value


def _str(extra: Mapping[str, Any], key: str) -> str | None:
    value = extra.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"extra[{key!r}] must be a non-empty string")
    return value.strip()


def _keys(extra: Mapping[str, Any]) -> StaticKeys | None:
    given = {k: extra.get(k) for k in _SECRET_KEYS if extra.get(k) is not None}
    if not given:
        return None
    key_id, secret = given.get("aws_access_key_id"), given.get("aws_secret_access_key")
    if not isinstance(key_id, str) or not isinstance(secret, str) or not key_id or not secret:
        # Name the keys only: a value here may be a secret.
        raise ConfigError(
            "extra['aws_access_key_id'] and extra['aws_secret_access_key'] must be given"
            " together as non-empty strings"
        )
    token = given.get("aws_session_token")
    if token is not None and not isinstance(token, str):
        raise ConfigError("extra['aws_session_token'] must be a string")
    return StaticKeys(key_id, secret, token or None)


def resolve_endpoint(region: str, base_url: str | None) -> str:
    """extra.base_url, else the AWS endpoint env vars (as the SDKs read them), else regional."""
    if base_url:
        return base_url.rstrip("/")
    for var in ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL"):
        value = os.environ.get(var, "").strip()
        if value:
            return value.rstrip("/")
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def _tool_choice(value: str | None, tools: tuple[ToolDefinition, ...]) -> str | None:
    if value is None or value in ("auto", "any"):
        return value
    if value not in {t.name for t in tools}:
        raise ConfigError(
            f"extra['tool_choice'] must be 'auto', 'any' or a tool name; got {value!r}"
        )
    return value


def _tools(tools: list[ToolDefinition]) -> tuple[ToolDefinition, ...]:
    seen: set[str] = set()
    for tool in tools:
        if not isinstance(tool, ToolDefinition):
            raise ConfigError(f"tools must be ToolDefinition values; got {type(tool).__name__}")
        if not tool.name or tool.name in seen:
            raise ConfigError(f"tool names must be unique and non-empty; got {tool.name!r}")
        if not isinstance(tool.input_schema, dict):
            raise ConfigError(f"tool {tool.name!r}: input_schema must be a JSON Schema object")
        seen.add(tool.name)
    return tuple(tools)


def resolve_settings(config: Config) -> NovaSettings:
    """Validate `config` for Nova. Raises ConfigError; does no network I/O."""
    extra = dict(config.extra)
    unknown = sorted(set(extra) - _KNOWN)
    if unknown:
        log.warning("nova: ignoring unknown extra key(s): %s", ", ".join(unknown))
    model_id = (config.model or DEFAULT_MODEL).strip()
    spec = model_spec(model_id)
    language = config.language.strip() if config.language else None
    if config.voice:
        voice = validate_voice(spec, config.voice)
        locale = voice_locale(voice)
        if language and locale and spec.generation == 1:
            lang = language.replace("_", "-").lower()
            if locale.lower() != lang and locale.lower().split("-")[0] != lang.split("-")[0]:
                log.warning("nova: voice %s speaks %s but language is %s", voice, locale, language)
    elif language:
        picked = voice_for_language(spec, language)
        if picked is None:
            raise ConfigError(
                f"no {spec.base_id} voice speaks {language!r}; choose one of:"
                f" {', '.join(spec.voices)}"
            )
        voice = picked
    else:
        voice = DEFAULT_VOICE
    endpointing = None
    if config.latency_target is not None:
        if spec.has_turn_detection:
            endpointing = ENDPOINTING[config.latency_target]
        else:
            log.debug(
                "nova: %s has no turn-detection setting; latency_target=%s ignored",
                spec.base_id,
                config.latency_target,
            )
    region = (
        _str(extra, "region")
        or os.environ.get("AWS_REGION", "").strip()
        or os.environ.get("AWS_DEFAULT_REGION", "").strip()
        or DEFAULT_REGION
    )
    tools = _tools(list(config.tools))
    share = extra.get("share_client", _BOOL_KEYS["share_client"])
    if not isinstance(share, bool):
        raise ConfigError("extra['share_client'] must be a boolean")
    renewal_after = _float(extra, "renewal_after_s")
    max_session = _float(extra, "max_session_s")
    if "max_session_s" not in extra and renewal_after >= max_session:
        # A short test renewal keeps the forced deadline a little after it.
        max_session = renewal_after * 1.25
    if max_session < renewal_after:
        raise ConfigError("extra['max_session_s'] must not be below extra['renewal_after_s']")
    frame_ms = extra.get("input_frame_ms", INPUT_FRAME_MS[0])
    if frame_ms not in INPUT_FRAME_MS or isinstance(frame_ms, bool):
        raise ConfigError(f"extra['input_frame_ms'] must be 32 or 64; got {frame_ms!r}")
    instructions = config.instructions if config.instructions is not None else ""
    return NovaSettings(
        model_id=model_id,
        spec=spec,
        voice=voice,
        instructions=instructions.strip() or DEFAULT_INSTRUCTIONS,
        tools=tools,
        tool_choice=_tool_choice(_str(extra, "tool_choice"), tools),
        language=language,
        endpointing=endpointing,
        region=region,
        endpoint=resolve_endpoint(region, _str(extra, "base_url")),
        max_tokens=_int(extra, "max_tokens"),
        top_p=_float(extra, "top_p"),
        temperature=_float(extra, "temperature"),
        renewal_after_s=renewal_after,
        max_session_s=max_session,
        renewal_buffer_s=_float(extra, "renewal_buffer_s"),
        standby_max_age_s=_float(extra, "standby_max_age_s"),
        retry=RetryPolicy(
            max_retries=_int(extra, "max_retries"),
            base_s=_float(extra, "retry_base_s"),
            max_s=_float(extra, "retry_max_s"),
            jitter=_float(extra, "retry_jitter"),
        ),
        reconnect_buffer_s=_float(extra, "reconnect_buffer_s"),
        connect_timeout_s=_float(extra, "connect_timeout_s"),
        close_timeout_s=_float(extra, "close_timeout_s"),
        stall_timeout_s=_float(extra, "stall_timeout_s"),
        event_queue_size=_int(extra, "event_queue_size"),
        send_backlog_frames=_int(extra, "send_backlog_frames"),
        max_coalesce_frames=_int(extra, "max_coalesce_frames"),
        input_frame_ms=int(frame_ms),
        share_client=share,
        profile=_str(extra, "profile"),
        keys=_keys(extra),
    )
