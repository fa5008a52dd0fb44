"""Command line: `python -m agent <command>` or `s2s-agent <command>`.

  dev              run the worker against LIVEKIT_URL for local development
  start            run the worker in production (JSON logs, drain on SIGTERM)
  connect          join one named room now, without dispatch; exit when it ends
  talk             talk to the provider with WAV files, no LiveKit server needed
  token            print a token to join a room from a browser
  download-files   prepare files the worker needs (Docker build step)

Configuration comes from the environment (see docs/worker.md); flags override it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.worker.settings import Settings as SettingsT

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL")


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="LiveKit server URL (env LIVEKIT_URL)")
    parser.add_argument("--api-key", help="API key (env LIVEKIT_API_KEY)")
    parser.add_argument("--api-secret", help="API secret (env LIVEKIT_API_SECRET)")


def _add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=os.environ.get("LIVEKIT_LOG_LEVEL", default).upper(),
        help=f"log level (env LIVEKIT_LOG_LEVEL; default {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    parser = argparse.ArgumentParser(
        prog=invoked if invoked and invoked != "__main__.py" else "python -m agent",
        description="LiveKit speech-to-speech agent worker.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    dev = sub.add_parser("dev", help="run the worker for local development")
    _add_connection(dev)
    _add_log_level(dev, "DEBUG")

    start = sub.add_parser("start", help="run the worker in production")
    _add_connection(start)
    _add_log_level(start, "INFO")
    start.add_argument("--log-format", choices=("json", "colored"), default="json")
    start.add_argument(
        "--drain-timeout", type=int, help="seconds to finish conversations on SIGTERM"
    )

    connect = sub.add_parser("connect", help="join one room now and talk there")
    _add_connection(connect)
    _add_log_level(connect, "DEBUG")
    connect.add_argument("--room", required=True, help="room name to join")
    connect.add_argument("--participant-identity", help="the agent's identity in the room")

    talk = sub.add_parser("talk", help="one exchange with the provider through WAV files")
    talk.add_argument(
        "--in",
        dest="input",
        required=True,
        help="the user's speech: a WAV file, or - for raw PCM16 mono on stdin",
    )
    talk.add_argument("--out", dest="output", required=True, help="WAV file for the reply")
    talk.add_argument("--provider", help="S2S provider (env S2S_PROVIDER)")
    talk.add_argument("--model", help="model (env S2S_MODEL)")
    talk.add_argument("--voice", help="voice (env S2S_VOICE)")
    talk.add_argument("--instructions", help="system instructions (env S2S_INSTRUCTIONS)")
    talk.add_argument("--language", help="language (env S2S_LANGUAGE)")
    talk.add_argument(
        "--in-rate", type=int, default=16000, help="sample rate of raw PCM on stdin (default 16000)"
    )
    talk.add_argument(
        "--silence-ms",
        type=int,
        default=2000,
        help="silence appended after the input so the turn ends (default 2000)",
    )
    talk.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the reply after the input (default 30)",
    )
    talk.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="send the input this many times faster than real time (default 1)",
    )
    _add_log_level(talk, "WARN")

    token = sub.add_parser("token", help="print a token to join a room from a browser")
    token.add_argument("--room", required=True, help="room to join")
    token.add_argument("--identity", default="user", help="participant identity (default user)")
    token.add_argument("--name", help="display name (default: the identity)")
    token.add_argument("--ttl-hours", type=float, default=6.0, help="validity (default 6 h)")
    token.add_argument(
        "--agent-name",
        help="dispatch this agent when joining (explicit dispatch; default: env AGENT_NAME)",
    )
    token.add_argument("--metadata", help='dispatch metadata JSON, e.g. \'{"voice": "amy"}\'')
    token.add_argument("--url", help="LiveKit server URL for the printed link (env LIVEKIT_URL)")
    token.add_argument("--api-key", help="API key (env LIVEKIT_API_KEY)")
    token.add_argument("--api-secret", help="API secret (env LIVEKIT_API_SECRET)")

    sub.add_parser("download-files", help="prepare files the worker needs (Docker build)")
    return parser


def _apply_overrides(args: argparse.Namespace) -> None:
    """Flags override the environment; they go into it so job processes see them too."""
    overrides = {
        "LIVEKIT_URL": getattr(args, "url", None),
        "LIVEKIT_API_KEY": getattr(args, "api_key", None),
        "LIVEKIT_API_SECRET": getattr(args, "api_secret", None),
        "S2S_DRAIN_TIMEOUT": getattr(args, "drain_timeout", None),
        "S2S_PROVIDER": getattr(args, "provider", None),
        "S2S_MODEL": getattr(args, "model", None),
        "S2S_VOICE": getattr(args, "voice", None),
        "S2S_INSTRUCTIONS": getattr(args, "instructions", None),
        "S2S_LANGUAGE": getattr(args, "language", None),
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _apply_overrides(args)

    # Imports stay inside: `talk` and `--help` should not pay for livekit-agents.
    from agent.worker.checks import check_startup
    from agent.worker.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"s2s-agent: {exc}", file=sys.stderr)
        return 2

    if args.command == "token":
        return _token(args, settings)

    if args.command == "talk":
        from agent.worker.talk import TalkOptions, run_talk

        return run_talk(
            settings,
            TalkOptions(
                input=args.input,
                output=args.output,
                in_rate=args.in_rate,
                silence_ms=args.silence_ms,
                timeout_s=args.timeout,
                speed=args.speed,
                log_level=args.log_level,
            ),
        )

    if args.command in ("dev", "start", "connect"):
        from agent.worker.preflight import server_answers

        if not server_answers(settings.livekit_url):
            return 2

    problem = check_startup(settings)
    if problem is not None:
        print(f"s2s-agent: {problem}", file=sys.stderr)
        return 2

    if args.command == "download-files":
        from agent.worker.checks import download_files

        return download_files()

    from agent.worker import runner

    if args.command == "connect":
        return runner.run_connect(
            settings,
            room=args.room,
            identity=args.participant_identity,
            log_level=args.log_level,
        )
    return runner.run_worker(
        settings,
        dev=args.command == "dev",
        log_level=args.log_level,
        log_format="colored" if args.command == "dev" else args.log_format,
    )


def _token(args: argparse.Namespace, settings: SettingsT) -> int:
    from datetime import timedelta

    from agent.worker.metadata import MetadataError
    from agent.worker.token import make_token, meet_link

    try:
        jwt = make_token(
            settings,
            room=args.room,
            identity=args.identity,
            name=args.name,
            ttl=timedelta(hours=args.ttl_hours),
            agent_name=args.agent_name or settings.agent_name or None,
            metadata=args.metadata,
        )
    except MetadataError as exc:
        print(f"s2s-agent: --metadata: {exc}", file=sys.stderr)
        return 2
    print(jwt)
    print(f"server: {settings.livekit_url}\njoin:   {meet_link(settings, jwt)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
