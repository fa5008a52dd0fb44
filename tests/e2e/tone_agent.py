"""A minimal real livekit-agents worker that proves the test server's agent side.

    TONE_AGENT_NAME=tone-agent python -m tests.e2e.tone_agent dev

Per job it joins (AUDIO_ONLY auto-subscribe, like AgentSession), waits for the caller,
plays a tone whose frequency comes from the job metadata ({"hz": 660}), measures the
caller's tone and publishes it as the `heard_hz` attribute, sends one `lk.transcription`
text stream, and shuts down when the caller leaves (the job then reports JS_SUCCESS).
"""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np
from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, cli

from .audio import dominant_frequency, tone

SAMPLE_RATE = 48000
FRAME = SAMPLE_RATE // 100

server = AgentServer(num_idle_processes=0)


async def _play(source: rtc.AudioSource, hz: float, seconds: float) -> None:
    samples = tone(hz, seconds, SAMPLE_RATE)
    for start in range(0, len(samples) - FRAME + 1, FRAME):
        chunk = samples[start : start + FRAME]
        await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, FRAME))


async def _measure(track: rtc.Track) -> float:
    """Dominant frequency of the first second of loud audio on `track`."""
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    loud: list[np.ndarray] = []
    try:
        async for event in stream:
            samples = np.frombuffer(bytes(event.frame.data), dtype=np.int16)
            if np.abs(samples).max() > 3000:
                loud.append(samples)
            if sum(len(s) for s in loud) >= SAMPLE_RATE:
                break
    finally:
        await stream.aclose()
    return dominant_frequency(np.concatenate(loud), SAMPLE_RATE)


@server.rtc_session(agent_name=os.environ.get("TONE_AGENT_NAME", ""))
async def entrypoint(ctx: JobContext) -> None:
    hz = float(json.loads(ctx.job.metadata or "{}").get("hz", 660))
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    caller = await ctx.wait_for_participant()
    left = asyncio.Event()

    def on_disconnected(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == caller.identity:
            left.set()

    ctx.room.on("participant_disconnected", on_disconnected)
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("agent-tone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await ctx.room.local_participant.publish_track(track, options)
    local = ctx.room.local_participant
    await local.set_attributes({"job_metadata": ctx.job.metadata})

    caller_track: rtc.Track | None = next(
        (p.track for p in caller.track_publications.values() if p.track is not None), None
    )
    if caller_track is None:
        subscribed: asyncio.Future[rtc.Track] = asyncio.get_running_loop().create_future()

        def on_track(t: rtc.Track, _: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            if p.identity == caller.identity and not subscribed.done():
                subscribed.set_result(t)

        ctx.room.on("track_subscribed", on_track)
        caller_track = await subscribed
    heard, _ = await asyncio.gather(_measure(caller_track), _play(source, hz, 2.0))
    await local.set_attributes({"heard_hz": f"{heard:.1f}"})
    await local.send_text(
        f"tone {hz:.0f} Hz played",
        topic="lk.transcription",
        attributes={"lk.transcription_final": "true"},
    )
    await left.wait()
    ctx.shutdown("caller left")


if __name__ == "__main__":
    cli.run_app(server)
