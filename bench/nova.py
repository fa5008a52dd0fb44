"""Nova provider benchmark against the Bedrock emulator (run: `uv run python bench/nova.py`).

The emulator runs in a child process (this file with --serve), so the CPU measured here is
ours. Every session sends real-time 32 ms frames: silence, a short "utterance" that starts a
reply, a barge-in while that reply plays, a second utterance, and (past the short renewal
point) a renewal once the second reply has been heard, then a third utterance.

Reported per configuration:
  cpu ms/session-s   CPU time of this process per second of conversation per session
  main / other       of which the main (asyncio) thread, and the other threads (CRT's
                     native event-loop thread, including the Python callbacks it runs)
  wake/s             voluntary context switches (thread wake-ups) per session-second: on a
                     virtual machine each costs tens to hundreds of µs of CPU, which is what
                     dominates a lone session
  reply ms           emulator's first reply byte sent → our AUDIO_OUTPUT event (p50/p90)
  barge-in ms        first barge-in frame sent → sink cleared (p50/p90; includes the
                     emulator's 120 ms speech-detection window)
  handover ms        renewal handover time (p50/max) and renewals done
and ratios against a baseline in the same run: the raw SDK client with one writer and one
reader per stream, sending the same frames and decoding every event, with no session logic.
Both are measured from the first audio frame (streams already open) to the end of close.
"pace-1" is the harness alone (the frame clock with a no-op send): part of every row, not
the provider's cost. An unreported warm-up session runs first, so one-off costs (lazy
imports, first TLS handshake) don't land on whichever row runs first.
Bounded to about a minute and a half; prints a table and a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FRAME_MS = 32
FRAME_BYTES = 16000 * 2 * FRAME_MS // 1000
DURATION_S = 7.0
WARMUP_S = 1.5
REPLY_MS = 1500


# ---------------------------------------------------------------- the emulator process


def _serve(args: argparse.Namespace) -> None:
    """Child: run the emulator; on stdin EOF print every stream's record as JSON."""
    from tests.emulators.bedrock import BedrockEmulator, Scenario, Turn
    from tests.emulators.tls import make_local_ca

    async def main() -> None:
        ca = make_local_ca(Path(args.ca_dir))
        reply = Turn(
            user_text="Tell me something.", reply_text="Here is a fact.", reply_audio_ms=REPLY_MS
        )
        scenario = Scenario(turns=(), fallback_turn=reply)
        async with BedrockEmulator(scenario=scenario, tls=ca) as emu:
            print(json.dumps({"url": emu.url, "ca_file": str(emu.ca_file)}), flush=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sys.stdin.read)
            out = []
            for s in emu.streams:
                system = ""
                for event in s.events:
                    if "textInput" in event["event"]:
                        system = event["event"]["textInput"]["content"]
                        break
                out.append(
                    {
                        "tag": system,
                        "status": s.http_status,
                        "frames": s.audio_frames,
                        "signature_failures": s.signature_failures,
                        "turns": [
                            {"first_audio_at": t.first_audio_at, "interrupted": t.interrupted}
                            for t in s.turns
                        ],
                    }
                )
            print(json.dumps(out), flush=True)

    asyncio.run(main())


class Emulator:
    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="nova-bench-")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--ca-dir", self._dir.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        self.url: str = ready["url"]
        os.environ["SSL_CERT_FILE"] = ready["ca_file"]  # before any CRT client exists

    def records(self) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        data: list[dict[str, Any]] = json.loads(self.proc.stdout.readline())
        self.proc.wait(timeout=10)
        self._dir.cleanup()
        return data

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- the caller's side


def _tone(ms: int) -> bytes:
    n = 16000 * ms // 1000
    return b"".join(
        int(4000 * math.sin(2 * math.pi * 300 * i / 16000)).to_bytes(2, "little", signed=True)
        for i in range(n)
    )


TONE = _tone(320)
SILENCE = b"\x00" * FRAME_BYTES


def _script(frame_ms: int, duration_s: float) -> list[tuple[bytes, str]]:
    """(chunk, mark) for the whole run; mark "barge" on the first barge-in frame."""
    size = 16000 * 2 * frame_ms // 1000

    def chunks(pcm: bytes) -> list[bytes]:
        pcm += b"\x00" * (-len(pcm) % size)
        return [pcm[i : i + size] for i in range(0, len(pcm), size)]

    def silence(seconds: float) -> list[bytes]:
        return chunks(b"\x00" * (int(seconds * 16000) * 2))

    plan: list[tuple[bytes, str]] = [(c, "") for c in silence(0.3) + chunks(TONE) + silence(0.8)]
    barge = chunks(TONE)  # ≈ 0.4 s into the reply's playout
    plan += [(barge[0], "barge")] + [(c, "") for c in barge[1:] + silence(0.7)]
    plan += [(c, "") for c in silence(1.6)]  # second reply plays; renewal after it
    plan += [(c, "") for c in chunks(TONE) + silence(0.7)]
    total = int(duration_s * 1000 / frame_ms)
    plan += [(c, "") for c in silence(max(0.0, (total - len(plan)) * frame_ms / 1000))]
    return plan[:total]


async def _pace(
    send: Callable[[bytes], Awaitable[None]],
    frame_ms: int,
    on_mark: Callable[[str], None],
    duration_s: float = DURATION_S,
) -> int:
    start = time.monotonic()
    sent = 0
    for index, (chunk, mark) in enumerate(_script(frame_ms, duration_s)):
        delay = start + index * frame_ms / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if mark:
            on_mark(mark)
        await send(chunk)
        sent += 1
    return sent


@dataclass
class Result:
    name: str
    sessions: int
    cpu_s: float = 0.0
    wall_s: float = 0.0
    first_audio: dict[str, list[float]] = field(default_factory=dict)  # tag → event times
    barge: list[float] = field(default_factory=list)  # barge-in frame sent → sink cleared
    flush: list[float] = field(default_factory=list)  # marker bytes received → sink cleared
    handover_ms: list[float] = field(default_factory=list)
    renewals: int = 0
    errors: int = 0
    dropped: int = 0
    frames_sent: int = 0
    main_cpu_s: float = 0.0  # the main (asyncio) thread's share of cpu_s
    wakeups: int = 0  # voluntary context switches, all threads

    def per_session_s(self, value: float) -> float:
        return value / (self.sessions * self.wall_s)

    @property
    def cpu_ms_per_session_s(self) -> float:
        return 1000.0 * self.per_session_s(self.cpu_s)


class _Meter:
    """Process CPU (all threads), the main thread's part, and wake-ups over a window.
    Start and stop it on the main thread (RUSAGE_THREAD is the calling thread's)."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._main = _thread_cpu()
        self._wakeups = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw

    def stop(self, result: Result) -> None:
        result.wall_s = time.monotonic() - self._wall
        result.cpu_s = time.process_time() - self._cpu
        result.main_cpu_s = _thread_cpu() - self._main
        result.wakeups = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - self._wakeups


def _thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


async def run_ours(
    url: str,
    name: str,
    sessions: int,
    frame_ms: int = FRAME_MS,
    duration_s: float = DURATION_S,
) -> Result:
    import agent.s2s as s2s
    import plugins.nova  # noqa: F401
    from agent.audio.sink import MemorySink
    from agent.s2s import EventType
    from plugins.nova.session import NovaSession
    from plugins.nova.transport import Connection
    from tests.emulators.bedrock import ACCESS_KEY, REGION, SECRET_KEY

    result = Result(name, sessions)
    marker_at: dict[int, float] = {}  # id(session) → when its marker payload arrived
    original = NovaSession._on_payload

    async def stamped(self: NovaSession, conn: Connection, data: bytes) -> None:
        # Bench instrumentation: when did the bytes of the barge-in marker reach us?
        if b"interrupted" in data:
            marker_at[id(self)] = time.monotonic()
        await original(self, conn, data)

    NovaSession._on_payload = stamped  # type: ignore[method-assign]
    extra: dict[str, Any] = {
        "input_frame_ms": frame_ms,
        "base_url": url,
        "region": REGION,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "renewal_after_s": 2.5,
        "max_session_s": 60.0,
    }
    provider = s2s.new("nova", s2s.Config(extra=extra))
    tags = [f"bench {name} {i}" for i in range(sessions)]
    started = await asyncio.gather(*(provider.start(instructions=t) for t in tags))

    async def one(session: Any, tag: str) -> None:
        sink = MemorySink(24000, clock="realtime", queue_ms=60_000, record=False)
        arrivals: list[float] = []
        result.first_audio[tag] = arrivals
        barge_at: list[float] = []
        turn_seen: set[str] = set()

        async def consume() -> None:
            async for event in session.events():
                if event.type is EventType.AUDIO_OUTPUT:
                    if event.turn_id not in turn_seen:
                        turn_seen.add(event.turn_id)
                        arrivals.append(time.monotonic())
                    await sink.capture(event.audio)
                elif event.type is EventType.INTERRUPTED:
                    sink.clear()
                    cleared = time.monotonic()
                    if barge_at:
                        result.barge.append(cleared - barge_at[0])
                        barge_at.clear()
                    if id(session) in marker_at:
                        result.flush.append(cleared - marker_at.pop(id(session)))
                    await session.interrupt(played_ms=int(sink.played_ms))
                elif event.type is EventType.ERROR:
                    result.errors += 1

        reader = asyncio.create_task(consume())
        sent = await _pace(
            session.send_audio,
            frame_ms,
            lambda _: barge_at.append(time.monotonic()),
            duration_s,
        )
        result.frames_sent += sent
        await session.close()
        await reader
        result.renewals += session.renewals
        result.dropped += session.dropped_frames
        if session.last_handover_ms is not None:
            result.handover_ms.append(session.last_handover_ms)

    meter = _Meter()
    try:
        await asyncio.gather(*(one(s, t) for s, t in zip(started, tags, strict=True)))
    finally:
        NovaSession._on_payload = original  # type: ignore[method-assign]
    meter.stop(result)
    return result


async def run_pace(name: str, sessions: int) -> Result:
    """The harness alone: the same frame clock per session, sending nowhere."""

    async def nowhere(chunk: bytes) -> None:
        return None

    result = Result(name, sessions)
    meter = _Meter()
    sent = await asyncio.gather(
        *(_pace(nowhere, FRAME_MS, lambda _: None) for _ in range(sessions))
    )
    meter.stop(result)
    result.frames_sent = sum(sent)
    return result


async def run_raw(url: str, name: str, sessions: int) -> Result:
    """Baseline: the raw SDK stream, same frames, one writer and one reader per stream."""
    from aws_sdk_bedrock_runtime.models import (
        BidirectionalInputPayloadPart,
        InvokeModelWithBidirectionalStreamInputChunk,
        InvokeModelWithBidirectionalStreamOperationInput,
    )

    from tests.emulators.bedrock.sdk import make_client

    result = Result(name, sessions)
    client = await make_client(url)
    tags = [f"bench {name} {i}" for i in range(sessions)]

    def ev(name_: str, body: dict[str, Any]) -> bytes:
        return json.dumps({"event": {name_: body}}).encode()

    async def one(tag: str, opened: asyncio.Future[None], go: asyncio.Event) -> None:
        stream = await client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id="amazon.nova-sonic-v1:0")
        )
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(256)
        prompt, system, audio = "p", "s", "a"
        text_cfg = {"mediaType": "text/plain"}
        for payload in (
            ev(
                "sessionStart",
                {"inferenceConfiguration": {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}},
            ),
            ev(
                "promptStart",
                {
                    "promptName": prompt,
                    "textOutputConfiguration": text_cfg,
                    "audioOutputConfiguration": {
                        "mediaType": "audio/lpcm",
                        "sampleRateHertz": 24000,
                        "sampleSizeBits": 16,
                        "channelCount": 1,
                        "voiceId": "matthew",
                        "encoding": "base64",
                        "audioType": "SPEECH",
                    },
                },
            ),
            ev(
                "contentStart",
                {
                    "promptName": prompt,
                    "contentName": system,
                    "type": "TEXT",
                    "interactive": False,
                    "role": "SYSTEM",
                    "textInputConfiguration": text_cfg,
                },
            ),
            ev("textInput", {"promptName": prompt, "contentName": system, "content": tag}),
            ev("contentEnd", {"promptName": prompt, "contentName": system}),
            ev(
                "contentStart",
                {
                    "promptName": prompt,
                    "contentName": audio,
                    "type": "AUDIO",
                    "interactive": True,
                    "role": "USER",
                    "audioInputConfiguration": {
                        "mediaType": "audio/lpcm",
                        "sampleRateHertz": 16000,
                        "sampleSizeBits": 16,
                        "channelCount": 1,
                        "audioType": "SPEECH",
                        "encoding": "base64",
                    },
                },
            ),
        ):
            queue.put_nowait(payload)

        async def writer() -> None:
            while (payload := await queue.get()) is not None:
                await stream.input_stream.send(
                    InvokeModelWithBidirectionalStreamInputChunk(
                        value=BidirectionalInputPayloadPart(bytes_=payload)
                    )
                )
                queue.task_done()
            await stream.input_stream.close()

        arrivals: list[float] = []
        result.first_audio[tag] = arrivals

        async def reader() -> None:
            _, out = await stream.await_output()
            in_reply = False
            while (chunk := await out.receive()) is not None:
                body = json.loads(chunk.value.bytes_)["event"]
                if "audioOutput" in body:
                    base64.b64decode(body["audioOutput"]["content"])
                    if not in_reply:
                        in_reply = True
                        arrivals.append(time.monotonic())
                elif "contentEnd" in body and body["contentEnd"].get("type") == "AUDIO":
                    in_reply = False

        async def send(chunk: bytes) -> None:
            b64 = base64.b64encode(chunk).decode()
            queue.put_nowait(
                ev("audioInput", {"promptName": prompt, "contentName": audio, "content": b64})
            )

        tasks = [asyncio.create_task(writer()), asyncio.create_task(reader())]
        try:
            async with asyncio.timeout(10):
                await queue.join()  # the preamble is out, as NovaSession's is after start()
            opened.set_result(None)
            await go.wait()
            sent = await _pace(send, FRAME_MS, lambda _: None)
            result.frames_sent += sent
            closing: list[bytes | None] = [
                ev("contentEnd", {"promptName": prompt, "contentName": audio}),
                ev("promptEnd", {"promptName": prompt}),
                ev("sessionEnd", {}),
                None,
            ]
            for item in closing:
                queue.put_nowait(item)
            async with asyncio.timeout(5):
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    loop = asyncio.get_running_loop()
    opened = [loop.create_future() for _ in tags]
    go = asyncio.Event()
    runs = [asyncio.create_task(one(t, o, go)) for t, o in zip(tags, opened, strict=True)]
    try:
        ready = asyncio.gather(*opened)
        waiters: list[asyncio.Future[Any]] = [ready, *runs]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():  # a stream failed to open: surface its error
            ready.cancel()
            await next(t for t in runs if t.done())
            raise RuntimeError("a raw stream ended before its audio started")
        meter = _Meter()
        go.set()
        await asyncio.gather(*runs)
        meter.stop(result)
    finally:
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await client.close()
    return result


# ---------------------------------------------------------------- report


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _pair(values: list[float], scale: float = 1.0) -> str:
    lo, hi = _pct([v * scale for v in values], 0.5), _pct([v * scale for v in values], 0.9)
    return "-" if lo is None else f"{lo:.1f}/{hi:.1f}"


def _reply_latencies(
    result: Result, records: list[dict[str, Any]], *, renewed: bool | None = None
) -> list[float]:
    """Emulator first reply byte → our first AUDIO_OUTPUT of that reply, in ms (only on
    renewed streams, the second and later of a session, if `renewed`)."""
    sent: dict[str, list[float]] = {}
    seen: dict[str, int] = {}
    for rec in records:
        tag = rec["tag"]
        if tag not in result.first_audio or rec["status"] != 200:
            continue
        index = seen[tag] = seen.get(tag, -1) + 1
        if renewed is not None and (index > 0) != renewed:
            continue
        sent.setdefault(tag, []).extend(
            t["first_audio_at"] for t in rec["turns"] if t["first_audio_at"] is not None
        )
    out: list[float] = []
    for tag, arrivals in result.first_audio.items():
        for emitted in sorted(sent.get(tag, [])):
            later = [a for a in arrivals if a >= emitted]
            if later:
                out.append(1000.0 * (min(later) - emitted))
    return out


async def bench() -> dict[str, Any]:
    emulator = Emulator()
    results: list[Result] = []
    try:
        print("warming up …", file=sys.stderr, flush=True)
        await run_ours(emulator.url, "warm-up", 1, duration_s=WARMUP_S)
        plan: list[tuple[str, Callable[[], Awaitable[Result]]]] = [
            ("pace-1", lambda: run_pace("pace-1", 1)),
            ("raw-1", lambda: run_raw(emulator.url, "raw-1", 1)),
            ("nova-1", lambda: run_ours(emulator.url, "nova-1", 1)),
            ("raw-10", lambda: run_raw(emulator.url, "raw-10", 10)),
            ("nova-10", lambda: run_ours(emulator.url, "nova-10", 10)),
            ("raw-25", lambda: run_raw(emulator.url, "raw-25", 25)),
            ("nova-25", lambda: run_ours(emulator.url, "nova-25", 25)),
            ("nova-25-64ms", lambda: run_ours(emulator.url, "nova-25-64ms", 25, frame_ms=64)),
        ]
        for name, run in plan:
            print(f"running {name} …", file=sys.stderr, flush=True)
            results.append(await run())
        records = emulator.records()
    finally:
        emulator.kill()
    by_name = {r.name: r for r in results}
    summary: dict[str, Any] = {}
    print(
        f"\n{'config':<14}{'cpu ms/sess-s':>14}{'main/other':>12}{'wake/s':>7}{'vs raw':>7}"
        f"{'reply ms':>12}{'renewed':>12}{'barge ms':>13}{'flush ms':>11}{'handover ms':>13}"
        f"{'renew':>6}{'err':>4}{'drop':>5}"
    )
    print(f"{'':<54}{'p50/p90 (emulator first byte → event)':<40}")
    for r in results:
        lat = _reply_latencies(r, records)
        renewed = _reply_latencies(r, records, renewed=True)
        base = by_name.get(f"raw-{r.sessions}")
        ratio = (
            r.cpu_ms_per_session_s / base.cpu_ms_per_session_s if base and base is not r else 1.0
        )
        mine = [x for x in records if x["tag"] in r.first_audio]
        main_ms = 1000.0 * r.per_session_s(r.main_cpu_s)
        other_ms = r.cpu_ms_per_session_s - main_ms
        summary[r.name] = {
            "sessions": r.sessions,
            "cpu_ms_per_session_s": round(r.cpu_ms_per_session_s, 2),
            "main_thread_ms_per_session_s": round(main_ms, 2),
            "other_threads_ms_per_session_s": round(other_ms, 2),
            "wakeups_per_session_s": round(r.per_session_s(r.wakeups)),
            "cpu_vs_raw": round(ratio, 2),
            "reply_ms_p50": _pct(lat, 0.5),
            "reply_ms_p90": _pct(lat, 0.9),
            "reply_ms_renewed_p50": _pct(renewed, 0.5),
            "barge_ms_p50": _pct([b * 1000 for b in r.barge], 0.5),
            "barge_ms_p90": _pct([b * 1000 for b in r.barge], 0.9),
            "flush_ms_p50": _pct([b * 1000 for b in r.flush], 0.5),
            "flush_ms_p90": _pct([b * 1000 for b in r.flush], 0.9),
            "handover_ms_p50": round(statistics.median(r.handover_ms), 3)
            if r.handover_ms
            else None,
            "handover_ms_max": round(max(r.handover_ms), 3) if r.handover_ms else None,
            "renewals": r.renewals,
            "errors": r.errors,
            "dropped_frames": r.dropped,
            "frames_sent": r.frames_sent,
            "frames_received": sum(x["frames"] for x in mine),
            "streams": len(mine),
            "signature_failures": sum(x["signature_failures"] for x in mine),
        }
        s = summary[r.name]
        handover = f"{s['handover_ms_p50']}/{s['handover_ms_max']}" if r.handover_ms else "-"
        split = f"{main_ms:.1f}/{other_ms:.1f}"
        print(
            f"{r.name:<14}{s['cpu_ms_per_session_s']:>14.2f}{split:>12}"
            f"{s['wakeups_per_session_s']:>7}{ratio:>7.2f}{_pair(lat):>12}"
            f"{_pair(renewed):>12}{_pair(r.barge, 1000):>13}{_pair(r.flush, 1000):>11}"
            f"{handover:>13}{r.renewals:>6}{r.errors:>4}{r.dropped:>5}"
        )
    summary["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    summary["livekit_reference_cpu_ms_per_session_s_at_10"] = 50.0
    print("\nLiveKit's Nova plugin (ANCHORS.md): 50 ms CPU per session-second at 10 sessions;")
    print("our bar is 10. JSON summary:")
    print(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ca-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args)
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(asyncio.wait_for(bench(), timeout=150))


if __name__ == "__main__":
    main()
