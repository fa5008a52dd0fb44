"""The room as a conversation sees it: a small interface, and its LiveKit implementation.

The conversation logic only uses `RoomPort`, so it runs against a fake room in tests; the
LiveKit adapter below is the one thin layer that touches `rtc.Room`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from livekit import rtc

from .participant import Peer
from .textstream import TextStreams

log = logging.getLogger(__name__)

AGENT_TRACK_NAME = "agent-voice"


@dataclass(frozen=True, slots=True)
class MicTrack:
    """A participant's subscribed microphone track."""

    sid: str
    track: rtc.Track


@dataclass(frozen=True, slots=True)
class Speaker:
    """The agent's published audio: capture into `source`, heard as track `sid`."""

    source: rtc.AudioSource
    sid: str


class RoomPort(Protocol):
    @property
    def local_identity(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    @property
    def streams(self) -> TextStreams: ...

    def peers(self) -> list[Peer]:
        """Remote participants in join order."""
        ...

    def microphone(self, identity: str) -> MicTrack | None:
        """The participant's microphone once subscribed (asking subscribes to it)."""
        ...

    async def changed(self) -> None:
        """Return at the next change: a participant joined or left, a track was subscribed
        or unsubscribed, or the room disconnected."""
        ...

    async def publish_audio(self, *, sample_rate: int, queue_ms: int) -> Speaker: ...

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...


class _Changes:
    """A level-triggered "something changed" signal: waiters wake at the next change."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self, *_: object) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class LiveKitRoom:
    """RoomPort over a connected `rtc.Room`. Subscribes only to the microphones asked for
    (connect with auto-subscribe off), so other participants' and agents' tracks are ignored."""

    def __init__(self, room: rtc.Room) -> None:
        self._room = room
        self._changes = _Changes()
        for event in (
            "participant_connected",
            "participant_disconnected",
            "track_published",
            "track_unpublished",
            "track_subscribed",
            "track_unsubscribed",
            "disconnected",
        ):
            room.on(event, self._changes.notify)

    @property
    def local_identity(self) -> str:
        return self._room.local_participant.identity

    @property
    def name(self) -> str:
        return self._room.name

    @property
    def connected(self) -> bool:
        return self._room.isconnected()

    @property
    def streams(self) -> TextStreams:
        return self._room.local_participant

    def peers(self) -> list[Peer]:
        return [Peer(p.identity, p.kind) for p in self._room.remote_participants.values()]

    def microphone(self, identity: str) -> MicTrack | None:
        participant = self._room.remote_participants.get(identity)
        if participant is None:
            return None
        for pub in participant.track_publications.values():
            if pub.source != rtc.TrackSource.SOURCE_MICROPHONE:
                continue
            if pub.track is not None:
                return MicTrack(pub.sid, pub.track)
            if not pub.subscribed:
                pub.set_subscribed(True)  # track_subscribed will signal a change
        return None

    async def changed(self) -> None:
        await self._changes.wait()

    async def publish_audio(self, *, sample_rate: int, queue_ms: int) -> Speaker:
        source = rtc.AudioSource(sample_rate, 1, queue_size_ms=queue_ms)
        track = rtc.LocalAudioTrack.create_audio_track(AGENT_TRACK_NAME, source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await self._room.local_participant.publish_track(track, options)
        return Speaker(source, publication.sid)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        if self._room.isconnected():
            await self._room.local_participant.set_attributes(attributes)
