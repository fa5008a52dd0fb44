"""The simulated caller: a real `livekit` rtc SDK participant.

It publishes a microphone that always sends (silence between utterances, like a real
mic), records every remote audio track it hears with arrival times, collects
`lk.transcription` text streams and the `lk.agent.state` attribute of each participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import api, rtc

from .audio import Recording, Samples

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_MS = 10
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
TRANSCRIPTION_TOPIC = "lk.transcription"
AGENT_STATE = "lk.agent.state"
FINAL_ATTR = "lk.transcription_final"
TRACK_ATTR = "lk.transcribed_track_id"


def token(
    identity: str,
    room: str,
    *,
    api_key: str = "devkey",
    api_secret: str = "secret",
    agents: list[tuple[str, str]] | None = None,
) -> str:
    """A join token; `agents` = [(agent_name, metadata)] asks for explicit dispatch."""
    at = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
    )
    if agents:
        at = at.with_room_config(
            api.RoomConfiguration(
                agents=[api.RoomAgentDispatch(agent_name=n, metadata=m) for n, m in agents]
            )
        )
    return at.to_jwt()


@dataclass(slots=True)
class Segment:
    """One lk.transcription text stream."""

    sender: str
    stream_id: str
    attributes: dict[str, str]
    text: str = ""
    first_at: float = 0.0
    last_at: float = 0.0
    done: bool = False

    @property
    def final(self) -> bool:
        return self.attributes.get(FINAL_ATTR) == "true"


@dataclass(slots=True)
class Utterance:
    samples: Samples
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0
    finished_at: float = 0.0


class Microphone:
    """Sends 10 ms frames in real time: queued utterances, silence otherwise."""

    def __init__(self) -> None:
        self.source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=100)
        self._queue: asyncio.Queue[Utterance] = asyncio.Queue(16)
        self._current: Utterance | None = None
        self._offset = 0
        self.frames_sent = 0

    def say(self, samples: Samples) -> Utterance:
        utterance = Utterance(samples)
        self._queue.put_nowait(utterance)
        return utterance

    def _next_frame(self) -> Samples:
        if self._current is None and not self._queue.empty():
            self._current = self._queue.get_nowait()
            self._offset = 0
            self._current.started_at = time.monotonic()
            self._current.started.set()
        if self._current is None:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        chunk = self._current.samples[self._offset : self._offset + FRAME_SAMPLES]
        self._offset += FRAME_SAMPLES
        if self._offset >= len(self._current.samples):
            self._current.finished_at = time.monotonic()
            self._current.finished.set()
            self._current = None
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), np.int16)])
        return chunk

    async def run(self) -> None:
        next_at = time.monotonic()
        while True:
            samples = self._next_frame()
            frame = rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES)
            await self.source.capture_frame(frame)
            self.frames_sent += 1
            next_at += FRAME_MS / 1000
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:  # fell far behind (loaded machine): resync, don't burst
                next_at = time.monotonic()


class Caller:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.room = rtc.Room()
        self.recordings: dict[str, Recording] = {}  # by sender identity
        self.segments: list[Segment] = []
        self.states: list[tuple[float, str, str]] = []  # (time, identity, lk.agent.state)
        self.mic: Microphone | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.room.on("track_subscribed", self._on_track_subscribed)
        self.room.on("participant_attributes_changed", self._on_attributes)
        self.room.on("participant_connected", self._on_participant)
        self.room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_text_stream)

    @property
    def identity(self) -> str:
        return self.room.local_participant.identity

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect(self, limit_s: float = 15.0) -> None:
        options = rtc.RoomOptions(auto_subscribe=True)
        await asyncio.wait_for(self.room.connect(self.url, self.token, options), limit_s)
        for participant in self.room.remote_participants.values():
            self._on_participant(participant)

    async def publish_microphone(self) -> Microphone:
        mic = Microphone()
        track = rtc.LocalAudioTrack.create_audio_track("microphone", mic.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)
        self.mic = mic
        self._spawn(mic.run())
        return mic

    def say(self, samples: Samples) -> Utterance:
        if self.mic is None:
            raise RuntimeError("publish_microphone() first")
        return self.mic.say(samples)

    # -- events ------------------------------------------------------------------------

    def _on_participant(self, participant: rtc.RemoteParticipant) -> None:
        state = participant.attributes.get(AGENT_STATE)
        if state:
            self.states.append((time.monotonic(), participant.identity, state))

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if AGENT_STATE in changed:
            self.states.append((time.monotonic(), participant.identity, changed[AGENT_STATE]))

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            recording = Recording(SAMPLE_RATE)
            self.recordings[participant.identity] = recording
            self._spawn(self._record(track, recording))

    async def _record(self, track: rtc.Track, recording: Recording) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        try:
            async for event in stream:
                frame = event.frame
                samples = np.frombuffer(bytes(frame.data), dtype=np.int16)
                # Stamp the first sample: the frame was complete when it arrived.
                recording.add(time.monotonic() - len(samples) / SAMPLE_RATE, samples)
        finally:
            await stream.aclose()

    def _on_text_stream(self, reader: rtc.TextStreamReader, sender: str) -> None:
        segment = Segment(
            sender=sender,
            stream_id=reader.info.stream_id,
            attributes=dict(reader.info.attributes or {}),
        )
        self.segments.append(segment)
        self._spawn(self._read_segment(reader, segment))

    async def _read_segment(self, reader: rtc.TextStreamReader, segment: Segment) -> None:
        async for chunk in reader:
            now = time.monotonic()
            segment.first_at = segment.first_at or now
            segment.last_at = now
            segment.text += chunk
        segment.attributes = dict(reader.info.attributes or {})
        segment.done = True

    # -- queries -----------------------------------------------------------------------

    def agents(self) -> list[rtc.RemoteParticipant]:
        return [
            p
            for p in self.room.remote_participants.values()
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        ]

    def transcript(self, sender: str | None = None, *, final_only: bool = True) -> str:
        parts = [
            s.text.strip()
            for s in self.segments
            if (sender is None or s.sender == sender) and (s.final or not final_only)
        ]
        return " ".join(p for p in parts if p)

    def agent_states(self, identity: str | None = None) -> list[str]:
        return [s for _, who, s in self.states if identity is None or who == identity]

    async def wait_for(
        self, predicate: Callable[[], Any], limit_s: float, what: str, poll: float = 0.02
    ) -> Any:
        """Poll `predicate` until it returns something truthy; fail with `what` after limit_s."""
        deadline = time.monotonic() + limit_s
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.identity}: timed out after {limit_s}s waiting for {what}"
                )
            await asyncio.sleep(poll)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.room.disconnect()
