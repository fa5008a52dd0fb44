"""A room: its participants, track routing, data forwarding and its own closing."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from .ids import new_sid

if TYPE_CHECKING:
    from .participant import Participant, PublishedTrack
    from .server import Server

log = logging.getLogger(__name__)


class Room:
    def __init__(
        self, server: Server, name: str, *, departure_timeout: float, empty_timeout: float
    ) -> None:
        self.server = server
        self.name = name
        self.sid = new_sid("RM_")
        self.created_at = time.time()
        self.departure_timeout = departure_timeout
        self.empty_timeout = empty_timeout
        self.participants: dict[str, Participant] = {}
        self.closed = False
        self.close_reason = ""
        self.closed_at = 0.0
        self._had_humans = False
        self._close_timer: asyncio.Task[Any] | None = None

    def info(self) -> models.Room:
        return models.Room(
            sid=self.sid,
            name=self.name,
            empty_timeout=int(self.empty_timeout),
            departure_timeout=int(self.departure_timeout),
            creation_time=int(self.created_at),
            creation_time_ms=int(self.created_at * 1000),
            num_participants=len(self.participants),
            num_publishers=sum(1 for p in self.participants.values() if p.tracks),
        )

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def add(self, participant: Participant) -> None:
        previous = self.participants.get(participant.identity)
        if previous is not None:
            reason = models.DisconnectReason.DUPLICATE_IDENTITY
            self.server.tasks.spawn(previous.close(reason), f"replace {previous.identity}")
        self.participants[participant.identity] = participant
        if not participant.is_agent:
            self._had_humans = True
        self._schedule_close()

    def remove(self, participant: Participant) -> None:
        if self.participants.get(participant.identity) is not participant:
            return
        del self.participants[participant.identity]
        self.broadcast_update(participant)
        for other in self.participants.values():
            for sid in participant.tracks:
                other.unsubscribe(sid)
        self._schedule_close()

    def broadcast_update(self, participant: Participant) -> None:
        """Send `participant`'s info to everyone (itself too; a hidden one only to itself)."""
        update = rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[participant.info()]))
        for other in self.participants.values():
            if other is participant or not participant.grants.hidden:
                other.send(update)

    def published_tracks(self, *, exclude: Participant) -> list[PublishedTrack]:
        return [t for p in self.others(exclude) for t in p.tracks.values()]

    def find_track(self, sid: str) -> PublishedTrack | None:
        for p in self.participants.values():
            if sid in p.tracks:
                return p.tracks[sid]
        return None

    def track_published(self, track: PublishedTrack) -> None:
        # Everyone has just received the owner's info with this track (broadcast_update).
        for other in self.others(track.owner):
            if other.auto_subscribe and other.grants.can_subscribe:
                other.subscribe(track)

    def forward_data(self, sender: Participant, label: str, raw: bytes) -> None:
        """Stamp the sender and forward to the others, honouring destinations.

        As livekit-server does: the sender's identity is asserted, except that an agent may
        send text streams and chat on behalf of another participant (user transcripts);
        transcription packets only come from agents; metrics packets are not forwarded.
        """
        if not sender.grants.can_publish_data:
            return
        try:
            packet = models.DataPacket.FromString(raw)
        except DecodeError:
            log.warning("%s sent a malformed data packet", sender.identity)
            return
        packet.kind = (
            models.DataPacket.Kind.RELIABLE
            if label == "_reliable"
            else models.DataPacket.Kind.LOSSY
        )
        packet.participant_sid = sender.sid
        on_behalf = sender.is_agent and packet.participant_identity not in ("", sender.identity)
        assert_identity = True
        which = packet.WhichOneof("value")
        if which == "user":
            packet.user.participant_sid = sender.sid
            packet.user.participant_identity = sender.identity
            if packet.destination_identities:
                packet.user.destination_identities[:] = packet.destination_identities
            else:
                packet.destination_identities[:] = packet.user.destination_identities
        elif which == "metrics" or (which == "transcription" and not sender.is_agent):
            return
        elif which == "chat_message" and on_behalf:
            packet.chat_message.generated = True
            assert_identity = False
        elif (
            which == "stream_header"
            and on_behalf
            and packet.stream_header.WhichOneof("content_header") == "text_header"
        ):
            packet.stream_header.text_header.generated = True
            assert_identity = False
        if assert_identity:
            packet.participant_identity = "" if sender.grants.hidden else sender.identity
        destinations = set(packet.destination_identities)
        data = packet.SerializeToString()
        for other in self.others(sender):
            if not destinations or other.identity in destinations:
                other.deliver_data(label, data)

    # -- closing ---------------------------------------------------------------------

    def _schedule_close(self) -> None:
        """Close when no human is left: agents alone do not keep a room open."""
        if self.closed:
            return
        humans = any(not p.is_agent for p in self.participants.values())
        if humans:
            if self._close_timer is not None:
                self._close_timer.cancel()
                self._close_timer = None
        elif self._close_timer is None:
            delay = self.departure_timeout if self._had_humans else self.empty_timeout
            self._close_timer = self.server.tasks.spawn(
                self._close_after(delay), f"close room {self.name}"
            )

    async def _close_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._close_timer = None
        await self.close("departure timeout" if self._had_humans else "empty timeout")

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.closed_at = time.time()
        if self._close_timer is not None and self._close_timer is not asyncio.current_task():
            self._close_timer.cancel()
        for participant in list(self.participants.values()):
            await participant.close(models.DisconnectReason.ROOM_DELETED)
        self.server.room_closed(self)

    def state(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "name": self.name,
            "closed": self.closed,
            "close_reason": self.close_reason,
            "closed_at_ms": int(self.closed_at * 1000),
            "participants": [
                {
                    "sid": p.sid,
                    "identity": p.identity,
                    "kind": models.ParticipantInfo.Kind.Name(p.kind),
                    "state": models.ParticipantInfo.State.Name(p.state),
                    "attributes": dict(p.attributes),
                    "metadata": p.metadata,
                    "tracks": [
                        {
                            "sid": t.sid,
                            "type": models.TrackType.Name(t.info.type),
                            "name": t.info.name,
                            "frames": t.fanout.frames,
                            "subscribers": t.fanout.sink_count,
                        }
                        for t in p.tracks.values()
                    ],
                    "subscriptions": {
                        sid: {"dropped_frames": sub.relay.dropped}
                        for sid, sub in p.subscriptions.items()
                    },
                    "data_forwarded": p.data_forwarded,
                    "data_dropped": p.data_dropped,
                }
                for p in self.participants.values()
            ],
        }
