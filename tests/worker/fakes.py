"""Fakes for the worker tests: a room (RoomPort) with real rtc audio, and a text-stream
recorder that keeps what a LiveKit client would receive."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from livekit import rtc

from agent.worker.participant import Peer
from agent.worker.room import MicTrack, Speaker


@dataclass
class RecordedStream:
    topic: str
    attributes: dict[str, str]
    sender_identity: str | None
    chunks: list[str] = field(default_factory=list)
    closed: bool = False
    close_attributes: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def final_attributes(self) -> dict[str, str]:
        """The attributes a client sees once the stream is closed (close overrides open)."""
        return {**self.attributes, **self.close_attributes}


class _Writer:
    def __init__(self, record: RecordedStream) -> None:
        self._record = record

    async def write(self, text: str) -> None:
        assert not self._record.closed, "write after close"
        self._record.chunks.append(text)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        self._record.closed = True
        self._record.close_attributes = dict(attributes or {})


class RecordingStreams:
    def __init__(self) -> None:
        self.streams: list[RecordedStream] = []

    async def stream_text(
        self,
        *,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        sender_identity: str | None = None,
    ) -> _Writer:
        record = RecordedStream(topic, dict(attributes or {}), sender_identity)
        self.streams.append(record)
        return _Writer(record)

    def by(self, identity: str) -> list[RecordedStream]:
        return [s for s in self.streams if s.sender_identity == identity]


class Microphone:
    """A participant's microphone: a real rtc.AudioSource published as a LocalAudioTrack."""

    _ids = itertools.count(1)

    def __init__(self, sample_rate: int = 48000) -> None:
        self.sample_rate = sample_rate
        self.source = rtc.AudioSource(sample_rate, 1, queue_size_ms=100)
        self.track = rtc.LocalAudioTrack.create_audio_track("mic", self.source)
        self.sid = f"TR_mic{next(self._ids)}"

    async def speak(self, ms: int, *, hz: float = 300.0, frame_ms: int = 10) -> None:
        """`ms` of tone, in real time (the source paces it)."""
        step = self.sample_rate * frame_ms // 1000
        t = np.arange(self.sample_rate * ms // 1000) / self.sample_rate
        pcm = (np.sin(2 * np.pi * hz * t) * 6000).astype(np.int16)
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            await self.source.capture_frame(
                rtc.AudioFrame(chunk.tobytes(), self.sample_rate, 1, len(chunk))
            )

    async def aclose(self) -> None:
        await self.source.aclose()


class FakeRoom:
    """A RoomPort whose participants the test moves in and out."""

    def __init__(self, *, name: str = "room-1", identity: str = "agent-job1") -> None:
        self.name = name
        self.local_identity = identity
        self.connected = True
        self.streams = RecordingStreams()
        self.attributes: list[dict[str, str]] = []
        self.speakers: list[Speaker] = []
        self.mic_requests: list[str] = []
        self._peers: list[Peer] = []
        self._mics: dict[str, Microphone] = {}
        self._event = asyncio.Event()

    # -- RoomPort -------------------------------------------------------------------------------

    def peers(self) -> list[Peer]:
        return list(self._peers)

    def microphone(self, identity: str) -> MicTrack | None:
        self.mic_requests.append(identity)
        mic = self._mics.get(identity)
        return MicTrack(mic.sid, mic.track) if mic is not None else None

    async def changed(self) -> None:
        await self._event.wait()

    async def publish_audio(self, *, sample_rate: int, queue_ms: int) -> Speaker:
        speaker = Speaker(rtc.AudioSource(sample_rate, 1, queue_size_ms=queue_ms), "TR_agent")
        self.speakers.append(speaker)
        return speaker

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attributes.append(dict(attributes))

    # -- test controls --------------------------------------------------------------------------

    def _notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def join(
        self,
        identity: str,
        *,
        kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        mic: Microphone | None = None,
    ) -> None:
        self._peers.append(Peer(identity, kind))
        if mic is not None:
            self._mics[identity] = mic
        self._notify()

    def publish_mic(self, identity: str, mic: Microphone) -> None:
        self._mics[identity] = mic
        self._notify()

    def leave(self, identity: str) -> None:
        self._peers = [p for p in self._peers if p.identity != identity]
        self._mics.pop(identity, None)
        self._notify()

    def disconnect(self) -> None:
        self.connected = False
        self._notify()

    def states(self) -> list[str]:
        return [a["lk.agent.state"] for a in self.attributes if "lk.agent.state" in a]


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll `predicate` (state owned by other tasks) until true; TimeoutError otherwise."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
