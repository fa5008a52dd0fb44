"""`talk`: one exchange with the provider through files, no LiveKit server needed.

The same Bridge the worker uses runs with a WAV file (or raw PCM on stdin) as the user and a
WAV file as the speaker: a quick check of provider credentials and of the whole audio path.
Silence is appended after the input so the model's turn detection fires; the command stops
once the reply has been received and written (TURN_END, playout drained), or after a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from livekit import rtc

from agent import s2s, telemetry
from agent.audio import WavSink, wav_frames
from agent.bridge import AgentState, Bridge
from agent.s2s import AudioFormat, ConversationContext, EventType, Hooks, S2SError, SessionEvent

from .conversation import StartSession, start_provider_session
from .metadata import job_options
from .settings import Settings
from .toolset import ToolsModuleError, load_tools
from .transcripts import merge_text

log = logging.getLogger(__name__)

EXIT_OK, EXIT_NO_REPLY, EXIT_USAGE = 0, 1, 2
STDIN = "-"


@dataclass(frozen=True, slots=True)
class TalkOptions:
    input: str
    output: str
    in_rate: int = 16000
    silence_ms: int = 2000
    timeout_s: float = 30.0
    speed: float = 1.0  # input pace: 1.0 = real time, like a microphone
    log_level: str = "WARN"


def run_talk(settings: Settings, options: TalkOptions) -> int:
    level = "WARNING" if options.log_level == "WARN" else options.log_level
    logging.basicConfig(
        level=logging.getLevelName(level) if level != "TRACE" else 5,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(talk(settings, options))
    except KeyboardInterrupt:
        return 130


async def talk(
    settings: Settings,
    options: TalkOptions,
    *,
    out: TextIO = sys.stdout,
    start_session: StartSession = start_provider_session,
) -> int:
    problem = _check_input(options)
    if problem is not None:
        print(f"talk: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        tools = load_tools(settings.tools_modules)
    except ToolsModuleError as exc:
        print(f"talk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if start_session is start_provider_session and settings.provider not in s2s.providers():
        available = ", ".join(s2s.providers()) or "none"
        print(
            f"talk: unknown provider {settings.provider!r}; available: {available}", file=sys.stderr
        )
        return EXIT_USAGE
    telemetry.configure_from_env()
    job = job_options(settings, None)
    context = ConversationContext(session_id=f"talk-{uuid.uuid4().hex[:8]}")
    try:
        session = await start_session(job, tools, context)
    except (S2SError, LookupError, OSError) as exc:
        print(f"talk: could not start the {job.provider} session: {exc}", file=sys.stderr)
        return EXIT_NO_REPLY

    sink = WavSink(options.output, session.output_format.sample_rate, realtime=False)
    exchange = _Exchange(out)
    input_done = asyncio.Event()
    bridge = Bridge(
        session,
        sink,
        source=_input(options, session.input_format, input_done),
        tools=tools,
        hooks=Hooks(on_turn=exchange.on_turn, on_error=exchange.on_error),
        on_transcript=exchange.on_transcript,
        on_state=exchange.on_state,
        context=context,
        provider=job.provider,
        model=job.model or "",
        tool_timeout_s=settings.tool_timeout_s,
    )
    run = asyncio.create_task(bridge.run(), name="talk-bridge")
    try:
        outcome = await exchange.wait(run, input_done, options.timeout_s)
    finally:
        await bridge.close()
        await run
        sink.close()
    seconds = sink.played_bytes / (2 * sink.sample_rate)
    if outcome is None:
        print(f"reply: {seconds:.2f} s written to {options.output}", file=out)
        return EXIT_OK
    print(f"talk: {outcome}", file=sys.stderr)
    return EXIT_NO_REPLY


def _check_input(options: TalkOptions) -> str | None:
    if not options.speed > 0:
        return "--speed must be positive"
    out_dir = Path(options.output).resolve().parent
    if not out_dir.is_dir():
        return f"output directory does not exist: {out_dir}"
    if options.input == STDIN:
        return None if options.in_rate > 0 else "--in-rate must be positive"
    path = Path(options.input)
    if not path.is_file():
        return f"input file not found: {path}"
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                return f"{path}: only 16-bit PCM WAV is supported"
    except (wave.Error, EOFError) as exc:
        return f"{path}: not a WAV file ({exc})"
    return None


class _Exchange:
    """Follows the conversation: prints transcripts, and knows when the reply is complete."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._user: dict[str | None, str] = {}
        self._agent: dict[str | None, str] = {}
        self._turn_ended = False
        self._spoke = False
        self._state: AgentState = "initializing"
        self._done = asyncio.Event()
        self._fatal: str | None = None

    def on_transcript(self, event: SessionEvent) -> None:
        text = event.text or ""
        if event.type is EventType.TRANSCRIPT:
            merged = self._user[event.turn_id] = merge_text(self._user.get(event.turn_id, ""), text)
            if event.final:
                print(f"you:   {merged.strip()}", file=self._out, flush=True)
                del self._user[event.turn_id]
        elif event.type is EventType.TEXT_OUTPUT:
            self._agent[event.turn_id] = merge_text(self._agent.get(event.turn_id, ""), text)

    def on_turn(self, event: SessionEvent) -> None:
        text = self._agent.pop(event.turn_id, "").strip()
        if text:
            print(f"agent: {text}", file=self._out, flush=True)
        self._turn_ended = True
        self._check()

    def on_error(self, event: SessionEvent) -> None:
        if event.error is not None and not event.error.recoverable:
            self._fatal = f"the provider failed: {event.error.message}"
            self._done.set()

    def on_state(self, state: AgentState) -> None:
        self._state = state
        if state == "speaking":
            self._spoke = True
        self._check()

    def _check(self) -> None:
        # A reply with audio has ended and played out (a tool-only turn has no audio).
        if self._spoke and self._turn_ended and self._state == "listening":
            self._done.set()

    async def wait(
        self, run: asyncio.Task[None], input_done: asyncio.Event, timeout_s: float
    ) -> str | None:
        """None once the reply is complete; else why not."""
        done = asyncio.create_task(self._done.wait())
        sent = asyncio.create_task(input_done.wait())
        try:
            await asyncio.wait({done, run, sent}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done() and not run.done():
                # The input is all sent: the reply gets `timeout_s` from here.
                await asyncio.wait({done, run}, timeout=timeout_s)
        finally:
            for task in (done, sent):
                task.cancel()
            await asyncio.gather(done, sent, return_exceptions=True)
        if self._fatal is not None:
            return self._fatal
        if self._done.is_set():
            return None
        if run.done():
            return "the session ended before a reply"
        return f"no complete reply within {timeout_s:g} s after the input ended"


async def _input(
    options: TalkOptions, fmt: AudioFormat, done: asyncio.Event
) -> AsyncIterator[rtc.AudioFrame]:
    """The user's audio, then `silence_ms` of silence, paced like a microphone (`speed`
    times real time); `done` is set when all was sent."""
    if options.input == STDIN:
        frames = _stdin_frames(options.in_rate, fmt.frame_ms)
    else:
        frames = wav_frames(options.input, frame_ms=fmt.frame_ms, realtime=False)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent_s = 0.0
    rate, channels = options.in_rate, 1

    async def paced(frame: rtc.AudioFrame) -> rtc.AudioFrame:
        nonlocal sent_s
        delay = start + sent_s / options.speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let the bridge's sender keep up
        sent_s += frame.samples_per_channel / frame.sample_rate
        return frame

    async for frame in frames:
        rate, channels = frame.sample_rate, frame.num_channels
        yield await paced(frame)
    step = rate * fmt.frame_ms // 1000
    silence = bytes(step * channels * 2)
    for _ in range(max(0, options.silence_ms) // fmt.frame_ms):
        yield await paced(rtc.AudioFrame(silence, rate, channels, step))
    done.set()


async def _stdin_frames(rate: int, frame_ms: int) -> AsyncIterator[rtc.AudioFrame]:
    """Raw PCM16 LE mono from stdin in `frame_ms` frames."""
    size = rate * frame_ms // 1000 * 2
    loop = asyncio.get_running_loop()
    transport: asyncio.ReadTransport | None = None
    if stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode):
        reader = asyncio.StreamReader()
        reader.feed_data(sys.stdin.buffer.read())  # a redirected file: read it at once
        reader.feed_eof()
    else:
        reader = asyncio.StreamReader(limit=size * 4)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_read_pipe(lambda: protocol, sys.stdin.buffer)
    try:
        while True:
            try:
                data = await reader.readexactly(size)
            except asyncio.IncompleteReadError as partial:
                data = partial.partial[: len(partial.partial) // 2 * 2]
                if data:
                    yield rtc.AudioFrame(data, rate, 1, len(data) // 2)
                return
            yield rtc.AudioFrame(data, rate, 1, size // 2)
    finally:
        if transport is not None:
            transport.close()
