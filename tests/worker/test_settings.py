from __future__ import annotations

import math

import pytest

from agent.worker.settings import (
    DEFAULT_LOAD_THRESHOLD,
    Settings,
    SettingsError,
)


def test_defaults_match_livekit_server_dev() -> None:
    s = Settings.from_env({})
    assert (s.livekit_url, s.api_key, s.api_secret) == ("ws://localhost:7880", "devkey", "secret")
    assert s.provider == "nova"
    assert s.agent_name == ""  # automatic dispatch
    assert s.tools_modules == ()
    assert s.participant_grace_s == 10.0
    assert s.max_jobs >= 2


def test_values_from_env() -> None:
    s = Settings.from_env(
        {
            "LIVEKIT_URL": "wss://example.livekit.cloud",
            "LIVEKIT_API_KEY": "k",
            "LIVEKIT_API_SECRET": "s3cr3t-value",
            "AGENT_NAME": "support",
            "S2S_PROVIDER": "openai_realtime",
            "S2S_PROVIDER_OPTIONS": '{"region": "eu-north-1"}',
            "S2S_MODEL": "m1",
            "S2S_VOICE": "tiffany",
            "S2S_INSTRUCTIONS": "Be brief.",
            "S2S_LANGUAGE": "en-US",
            "S2S_LATENCY_TARGET": "LOW",
            "S2S_GREETING": "Say hello.",
            "S2S_TOOLS_MODULE": "agent.example_tools, my.tools ,",
            "S2S_LOAD_THRESHOLD": "0.8",
            "S2S_MAX_JOBS": "7",
            "S2S_DRAIN_TIMEOUT": "45",
            "S2S_PARTICIPANT_GRACE": "2.5",
            "S2S_OUTPUT_QUEUE_MS": "300",
            "S2S_TOOL_TIMEOUT": "4",
            "S2S_HTTP_PORT": "9000",
            "S2S_IDLE_PROCESSES": "1",
        }
    )
    assert s.livekit_url == "wss://example.livekit.cloud"
    assert s.agent_name == "support"
    assert s.provider == "openai_realtime"
    assert s.provider_options == {"region": "eu-north-1"}
    assert (s.model, s.voice, s.instructions, s.language) == ("m1", "tiffany", "Be brief.", "en-US")
    assert s.latency_target == "low"
    assert s.greeting == "Say hello."
    assert s.tools_modules == ("agent.example_tools", "my.tools")
    assert s.load_threshold == 0.8
    assert (s.max_jobs, s.drain_timeout_s, s.participant_grace_s) == (7, 45, 2.5)
    assert (s.output_queue_ms, s.tool_timeout_s, s.http_port, s.idle_processes) == (
        300,
        4.0,
        9000,
        1,
    )


def test_livekit_agent_name_is_a_fallback() -> None:
    assert Settings.from_env({"LIVEKIT_AGENT_NAME": "x"}).agent_name == "x"
    assert Settings.from_env({"LIVEKIT_AGENT_NAME": "x", "AGENT_NAME": "y"}).agent_name == "y"


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "LIVEKIT_URL": "localhost:7880",
                "S2S_LATENCY_TARGET": "fast",
                "S2S_LOAD_THRESHOLD": "1.5",
                "S2S_MAX_JOBS": "zero",
                "S2S_PARTICIPANT_GRACE": "-1",
                "S2S_HTTP_PORT": "70000",
                "S2S_PROVIDER_OPTIONS": "[1]",
            }
        )
    problems = "\n".join(info.value.problems)
    assert len(info.value.problems) == 7
    for name in (
        "LIVEKIT_URL",
        "S2S_LATENCY_TARGET",
        "S2S_LOAD_THRESHOLD",
        "S2S_MAX_JOBS",
        "S2S_PARTICIPANT_GRACE",
        "S2S_HTTP_PORT",
        "S2S_PROVIDER_OPTIONS",
    ):
        assert name in problems
    assert "invalid configuration" in str(info.value)


def test_bad_provider_options_do_not_echo_their_text() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"S2S_PROVIDER_OPTIONS": '{"api_key": "sk-LEAK'})
    assert "sk-LEAK" not in str(info.value)


@pytest.mark.parametrize("raw", ["off", "none", "inf", "OFF"])
def test_load_threshold_can_be_disabled(raw: str) -> None:
    assert Settings.from_env({"S2S_LOAD_THRESHOLD": raw}).threshold_for(dev=False) == math.inf


def test_threshold_defaults_differ_by_mode() -> None:
    s = Settings.from_env({})
    assert s.threshold_for(dev=True) == math.inf
    assert s.threshold_for(dev=False) == DEFAULT_LOAD_THRESHOLD
    explicit = Settings.from_env({"S2S_LOAD_THRESHOLD": "0.5"})
    assert explicit.threshold_for(dev=True) == explicit.threshold_for(dev=False) == 0.5


def test_drain_turn_timeout_fits_inside_the_drain_timeout() -> None:
    assert Settings(drain_timeout_s=30).drain_turn_timeout_s == 27.0
    assert Settings(drain_timeout_s=2).drain_turn_timeout_s == 1.0


def test_secrets_stay_out_of_repr() -> None:
    s = Settings.from_env(
        {"LIVEKIT_API_SECRET": "TOPSECRET", "S2S_PROVIDER_OPTIONS": '{"api_key": "sk-XYZ"}'}
    )
    assert "TOPSECRET" not in repr(s)
    assert "sk-XYZ" not in repr(s)
