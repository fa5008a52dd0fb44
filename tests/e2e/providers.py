"""The provider behind the worker, behind a small interface so every scenario runs per provider.

A harness knows how to point the worker at its emulator (`worker_env`) and how to script one
test's conversation (`run(turns)`), and reports what the emulated model saw: sessions, the
voice and instructions each used, tool results, and when it decided the user barged in
(time.monotonic(), the machine-wide clock the caller also stamps audio with).

Nova (Bedrock emulator) is here; OpenAI Realtime and Gemini Live add a harness each to
HARNESSES once their plugins and emulators exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .netns import HOST


@dataclass(frozen=True, slots=True)
class ScriptTurn:
    """One scripted model turn: what it hears, says (text) and plays (a tone)."""

    reply_text: str
    tone_hz: float
    reply_audio_ms: int = 1500
    user_text: str = "(user speech)"
    tool: tuple[str, dict[str, Any]] | None = None  # (name, arguments) called before replying


@dataclass(slots=True)
class SessionSeen:
    voice: str = ""
    instructions: str = ""
    closed: bool = False


@dataclass(slots=True)
class ProviderObservations:
    sessions: list[SessionSeen] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)
    interrupts: list[float] = field(default_factory=list)  # monotonic time of each barge-in
    replies_started: list[float] = field(default_factory=list)  # first reply audio sent


class ProviderRun(Protocol):
    def observe(self) -> ProviderObservations: ...


class ProviderHarness(Protocol):
    name: str  # the S2S_PROVIDER value
    voice: str  # a valid voice other than the provider's default (metadata tests)

    def unavailable(self) -> str | None:
        """Why this provider can't run here (plugin or emulator missing), or None."""

    def setup(self, workdir: Path) -> None:
        """Once per session, before the worker starts (certificates, ports)."""

    def worker_env(self) -> dict[str, str]: ...

    def run(
        self, turns: Sequence[ScriptTurn], fallback: ScriptTurn
    ) -> contextlib.AbstractAsyncContextManager[ProviderRun]: ...


# -- Nova Sonic over the Bedrock emulator ---------------------------------------------------

NOVA_PORT = 8443
POLL_S = 0.002  # how often interrupt flags are sampled (the measurement's resolution)


class _NovaRun:
    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.interrupts: dict[tuple[int, int], float] = {}

    async def watch(self) -> None:
        """Stamp the moment each reply's interrupted flag flips (the model's barge-in)."""
        while True:
            for stream in self.emulator.streams:
                for turn in stream.turns:
                    key = (stream.id, turn.number)
                    if turn.interrupted and key not in self.interrupts:
                        self.interrupts[key] = time.monotonic()
            await asyncio.sleep(POLL_S)

    def observe(self) -> ProviderObservations:
        seen = ProviderObservations()
        for stream in self.emulator.accepted_streams:
            session = SessionSeen(closed=stream.finished)
            roles: dict[str, str] = {}  # contentName → role
            for event in stream.events:
                body = event.get("event", {})
                if "promptStart" in body:
                    config = body["promptStart"].get("audioOutputConfiguration", {})
                    session.voice = str(config.get("voiceId", ""))
                elif "contentStart" in body:
                    start = body["contentStart"]
                    roles[str(start.get("contentName", ""))] = str(start.get("role", ""))
                elif "textInput" in body:
                    text = body["textInput"]
                    if roles.get(str(text.get("contentName", ""))) == "SYSTEM":
                        session.instructions += str(text.get("content", ""))
            seen.sessions.append(session)
            for turn in stream.turns:
                if turn.tool_result is not None:
                    seen.tool_results.append(turn.tool_result)
                if turn.first_audio_at is not None:
                    seen.replies_started.append(turn.first_audio_at)
        seen.interrupts = sorted(self.interrupts.values())
        return seen


class NovaHarness:
    name = "nova"
    voice = "amy"

    def __init__(self) -> None:
        self._ca: Any = None

    def unavailable(self) -> str | None:
        try:
            import plugins.nova  # noqa: F401
            import tests.emulators.bedrock  # noqa: F401
        except ImportError as exc:
            return f"nova provider or Bedrock emulator not importable: {exc}"
        return None

    def setup(self, workdir: Path) -> None:
        from tests.emulators.tls import make_local_ca

        self._ca = make_local_ca(workdir / "ca", [HOST, "127.0.0.1", "localhost"])

    def worker_env(self) -> dict[str, str]:
        from tests.emulators.bedrock import ACCESS_KEY, REGION, SECRET_KEY

        assert self._ca is not None, "setup() first"
        return {
            "S2S_PROVIDER": self.name,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": f"https://{HOST}:{NOVA_PORT}",
            "SSL_CERT_FILE": str(self._ca.ca_file),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @contextlib.asynccontextmanager
    async def run(
        self, turns: Sequence[ScriptTurn], fallback: ScriptTurn
    ) -> AsyncIterator[ProviderRun]:
        # A fresh emulator per test on the fixed port the worker points at: each test gets
        # its own script and turn numbering (job processes connect anew per session).
        from tests.emulators.bedrock import BedrockEmulator, Scenario, ToolCallSpec, Turn

        def turn(t: ScriptTurn) -> Turn:
            tool = ToolCallSpec(name=t.tool[0], arguments=t.tool[1]) if t.tool else None
            return Turn(
                user_text=t.user_text,
                reply_text=t.reply_text,
                reply_audio_ms=t.reply_audio_ms,
                tone_hz=t.tone_hz,
                tool_call=tool,
            )

        scenario = Scenario(turns=tuple(turn(t) for t in turns), fallback_turn=turn(fallback))
        emulator = BedrockEmulator(scenario=scenario, tls=self._ca, host=HOST, port=NOVA_PORT)
        async with emulator:
            run = _NovaRun(emulator)
            watcher = asyncio.create_task(run.watch())
            try:
                yield run
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


HARNESSES: list[ProviderHarness] = [NovaHarness()]


def describe(obs: ProviderObservations) -> str:
    return json.dumps(
        {
            "sessions": [dataclasses.asdict(s) for s in obs.sessions],
            "tool_results": obs.tool_results,
            "interrupts": len(obs.interrupts),
        }
    )
