from __future__ import annotations

import os

import pytest

from agent.__main__ import _apply_overrides, build_parser, main


def test_commands_and_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["start", "--url", "wss://x", "--drain-timeout", "40"])
    assert (args.command, args.url, args.drain_timeout, args.log_format) == (
        "start",
        "wss://x",
        40,
        "json",
    )
    args = parser.parse_args(["connect", "--room", "r1", "--participant-identity", "bot"])
    assert (args.room, args.participant_identity) == ("r1", "bot")
    args = parser.parse_args(["talk", "--in", "-", "--out", "o.wav", "--provider", "nova"])
    assert (args.input, args.output, args.provider, args.speed) == ("-", "o.wav", "nova", 1.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["connect"])  # --room is required
    with pytest.raises(SystemExit):
        parser.parse_args(["console"])  # not offered: no local audio device mode


def test_flags_override_the_environment_for_job_processes(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LIVEKIT_URL", "ws://from-env:7880")
    args = build_parser().parse_args(
        ["start", "--url", "ws://from-flag:7880", "--api-key", "k", "--drain-timeout", "9"]
    )
    _apply_overrides(args)
    assert os.environ["LIVEKIT_URL"] == "ws://from-flag:7880"
    assert os.environ["LIVEKIT_API_KEY"] == "k"
    assert os.environ["S2S_DRAIN_TIMEOUT"] == "9"
    assert "LIVEKIT_API_SECRET" not in os.environ


def test_invalid_settings_exit_2_with_every_problem(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("S2S_LATENCY_TARGET", "warp")
    clean_env.setenv("S2S_MAX_JOBS", "-3")
    assert main(["dev"]) == 2
    err = capsys.readouterr().err
    assert "S2S_LATENCY_TARGET" in err and "S2S_MAX_JOBS" in err


def test_unknown_provider_exits_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("S2S_PROVIDER", "no-such-provider")
    assert main(["download-files"]) == 2
    assert "S2S_PROVIDER 'no-such-provider' is not available" in capsys.readouterr().err


def test_broken_tools_module_exits_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("S2S_TOOLS_MODULE", "agent.example_tools,no_such_module_xyz")
    assert main(["download-files"]) == 2
    assert "cannot load tools from 'no_such_module_xyz'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # the dev secret is short on purpose
def test_token_for_explicit_dispatch(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from livekit import api

    code = main(
        [
            "token",
            "--room",
            "demo",
            "--identity",
            "ann",
            "--agent-name",
            "support",
            "--metadata",
            '{"voice": "tiffany"}',
        ]
    )
    assert code == 0
    out = capsys.readouterr()
    claims = api.TokenVerifier("devkey", "secret").verify(out.out.strip())
    assert claims.identity == "ann"
    assert claims.video is not None and claims.video.room == "demo" and claims.video.room_join
    assert claims.room_config is not None
    (dispatch,) = claims.room_config.agents
    assert (dispatch.agent_name, dispatch.metadata) == ("support", '{"voice": "tiffany"}')
    assert "https://meet.livekit.io/custom?liveKitUrl=ws%3A%2F%2Flocalhost%3A7880" in out.err


def test_token_refuses_metadata_the_worker_would_refuse(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--room", "demo", "--metadata", '{"voice": 5}']) == 2
    assert "'voice' must be a string" in capsys.readouterr().err
