"""One participant: its signal WebSocket, publisher and subscriber peer connections.

Dual-PC mode (subscriber_primary=false): the client offers on its PUBLISHER connection and
the server answers; the server offers on the SUBSCRIBER connection, which also carries the
server's data channels, and the client answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from aiortc import MediaStreamTrack, RTCDataChannel, RTCIceCandidate, RTCSessionDescription
from livekit.protocol import models, rtc

from .auth import Grants
from .ids import new_sid
from .media import (
    Fanout,
    RelayTrack,
    close_peer_connection,
    new_peer_connection,
    parse_candidate,
    track_ids_by_mid,
)
from .tasks import TaskOwner

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger(__name__)

State = models.ParticipantInfo.State
PUBLISHER = rtc.SignalTarget.PUBLISHER
SUBSCRIBER = rtc.SignalTarget.SUBSCRIBER
RELIABLE = "_reliable"
LOSSY = "_lossy"
PING_INTERVAL_S = 5  # must be non-zero: 0 makes the SDK's FFI panic
PING_TIMEOUT_S = 15
SERVER_VERSION = "1.9.0"
SIGNAL_QUEUE = 1024
DATA_BACKLOG = 256
ANSWER_TIMEOUT_S = 15.0


class PublishedTrack:
    """A track a participant publishes; subscribers attach RelayTracks to its fanout."""

    def __init__(self, owner: Participant, info: models.TrackInfo) -> None:
        self.owner = owner
        self.info = info
        self.fanout = Fanout()

    @property
    def sid(self) -> str:
        return self.info.sid


@dataclass(slots=True)
class Subscription:
    track: PublishedTrack
    relay: RelayTrack
    confirmed: bool = False


class Participant:
    def __init__(
        self,
        room: Room,
        grants: Grants,
        ws: web.WebSocketResponse,
        *,
        auto_subscribe: bool,
    ) -> None:
        self.room = room
        self.grants = grants
        self.ws = ws
        self.auto_subscribe = auto_subscribe
        self.sid = new_sid("PA_")
        self.identity = grants.identity
        self.name = grants.name
        self.metadata = grants.metadata
        self.attributes = dict(grants.attributes)
        self.kind: models.ParticipantInfo.Kind = grants.participant_kind
        self.state: models.ParticipantInfo.State = State.JOINING
        self.joined_at = time.time()
        self.version = 1
        self.closed = False
        self.tracks: dict[str, PublishedTrack] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.data_forwarded = 0
        self.data_dropped = 0
        self._pending_tracks: dict[str, models.TrackInfo] = {}  # cid → info before media
        self._mid_to_cid: dict[str, str] = {}
        self._candidates: dict[int, list[RTCIceCandidate | None]] = {PUBLISHER: [], SUBSCRIBER: []}
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue(SIGNAL_QUEUE)
        self._tasks = TaskOwner(f"participant {self.identity}")
        self._writer_task: asyncio.Task[None] | None = None
        self._negotiate = asyncio.Event()
        self._answered = asyncio.Event()
        self._offer_id = 0
        self._pub = new_peer_connection()
        self._sub = new_peer_connection()
        self._sub_channels: dict[str, RTCDataChannel] = {}
        self._backlog: deque[tuple[str, bytes]] = deque()

    @property
    def is_agent(self) -> bool:
        return self.kind == models.ParticipantInfo.Kind.AGENT

    @property
    def visible(self) -> bool:
        return bool(not self.grants.hidden and self.state != State.DISCONNECTED)

    def info(self) -> models.ParticipantInfo:
        return models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            state=self.state,
            tracks=[t.info for t in self.tracks.values()],
            metadata=self.metadata,
            joined_at=int(self.joined_at),
            joined_at_ms=int(self.joined_at * 1000),
            version=self.version,
            permission=self.grants.permission(),
            is_publisher=bool(self.tracks),
            kind=self.kind,
            attributes=self.attributes,
        )

    def changed(self) -> None:
        """Bump the info version and tell everyone in the room (this participant too)."""
        self.version += 1
        self.room.broadcast_update(self)

    # -- signaling ---------------------------------------------------------------

    def send(self, response: rtc.SignalResponse) -> None:
        if self.closed:
            return
        try:
            self._out.put_nowait(response.SerializeToString())
        except asyncio.QueueFull:
            log.warning("%s: signal queue full, dropping the connection", self.identity)
            self.room.server.tasks.spawn(self.close(), f"close {self.identity}")

    async def _writer(self) -> None:
        while (data := await self._out.get()) is not None:
            await self.ws.send_bytes(data)

    def _join_response(self) -> rtc.JoinResponse:
        others = [p.info() for p in self.room.others(self) if p.visible]
        return rtc.JoinResponse(
            room=self.room.info(),
            participant=self.info(),
            other_participants=others,
            server_version=SERVER_VERSION,
            subscriber_primary=False,
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
            server_info=models.ServerInfo(
                edition=models.ServerInfo.Edition.Standard,
                version=SERVER_VERSION,
                protocol=16,
                region="local",
                node_id="lkserver-test",
            ),
            client_configuration=models.ClientConfiguration(
                resume_connection=models.ClientConfigSetting.DISABLED
            ),
        )

    async def run(self) -> None:
        """Serve the session until the client leaves or the connection drops."""
        self._setup_peer_connections()
        self._writer_task = self._tasks.spawn(self._writer(), "writer")
        self.room.add(self)
        self.state = State.JOINED
        self.send(rtc.SignalResponse(join=self._join_response()))
        if self.auto_subscribe and self.grants.can_subscribe:
            for track in self.room.published_tracks(exclude=self):
                self.subscribe(track)
        self._negotiate.set()  # the first subscriber offer carries the data channels
        self._tasks.spawn(self._negotiator(), "negotiator")
        try:
            await self._read_loop()
        finally:
            await self.close()

    async def _read_loop(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type == WSMsgType.ERROR:
                    return
                continue
            request = rtc.SignalRequest.FromString(msg.data)
            if not await self._handle(request):
                return

    async def _handle(self, req: rtc.SignalRequest) -> bool:
        """Handle one request; False when the client left."""
        which = req.WhichOneof("message")
        if which == "offer":
            await self._on_publisher_offer(req.offer)
        elif which == "answer":
            await self._on_subscriber_answer(req.answer)
        elif which == "trickle":
            await self._on_trickle(req.trickle)
        elif which == "add_track":
            self._on_add_track(req.add_track)
        elif which == "subscription":
            self._on_subscription(req.subscription)
        elif which == "update_metadata":
            self._on_update_metadata(req.update_metadata)
        elif which == "mute":
            self._on_mute(req.mute)
        elif which == "ping":
            self.send(rtc.SignalResponse(pong=req.ping))
        elif which == "ping_req":
            pong = rtc.Pong(last_ping_timestamp=req.ping_req.timestamp, timestamp=_now_ms())
            self.send(rtc.SignalResponse(pong_resp=pong))
        elif which == "leave":
            return False
        else:
            log.debug("%s: ignoring %s", self.identity, which)
        return True

    # -- publisher connection ------------------------------------------------------

    def _setup_peer_connections(self) -> None:
        self._pub.on("track", self._on_remote_track)
        self._pub.on("datachannel", self._on_client_channel)
        self._pub.on("connectionstatechange", self._on_publisher_state)
        for label, ordered, retransmits in ((RELIABLE, True, None), (LOSSY, False, 0)):
            channel = self._sub.createDataChannel(
                label, ordered=ordered, maxRetransmits=retransmits
            )
            channel.on("open", self._flush_backlog)
            self._sub_channels[label] = channel

    async def _on_publisher_offer(self, offer: rtc.SessionDescription) -> None:
        self._mid_to_cid.update(track_ids_by_mid(offer.sdp))
        await self._pub.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await self._flush_candidates(PUBLISHER)
        await self._pub.setLocalDescription(await self._pub.createAnswer())
        local = self._pub.localDescription
        answer = rtc.SessionDescription(type="answer", sdp=local.sdp, id=offer.id)
        self.send(rtc.SignalResponse(answer=answer))

    def _on_publisher_state(self) -> None:
        state = self._pub.connectionState
        if state == "connected" and self.state == State.JOINED:
            self.state = State.ACTIVE  # wait_for_participant only accepts ACTIVE
            self.changed()
        elif state == "failed":
            self.room.server.tasks.spawn(self.close(), f"close {self.identity}")

    def _on_add_track(self, req: rtc.AddTrackRequest) -> None:
        if not self.grants.can_publish:
            log.warning("%s may not publish; add_track ignored", self.identity)
            return
        audio = req.type == models.TrackType.AUDIO
        info = models.TrackInfo(
            sid=new_sid("TR_"),
            type=req.type,
            name=req.name,
            muted=req.muted,
            source=req.source,
            mime_type="audio/opus" if audio else "video/vp8",
            disable_dtx=req.disable_dtx,
            stereo=req.stereo,
            disable_red=req.disable_red,
            stream=req.stream,
            audio_features=req.audio_features,
            width=req.width,
            height=req.height,
        )
        self._pending_tracks[req.cid] = info
        self.send(
            rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid=req.cid, track=info))
        )

    def _on_remote_track(self, track: MediaStreamTrack) -> None:
        if self.closed:
            return
        mid = next((t.mid for t in self._pub.getTransceivers() if t.receiver.track is track), None)
        cid = self._mid_to_cid.get(mid or "")
        info = self._pending_tracks.pop(cid, None) if cid else None
        if info is None:  # fall back to the oldest pending track of that kind
            kind = models.TrackType.AUDIO if track.kind == "audio" else models.TrackType.VIDEO
            cid = next((c for c, i in self._pending_tracks.items() if i.type == kind), None)
            if cid is None:
                log.warning("%s: media for an unannounced %s track", self.identity, track.kind)
                return
            info = self._pending_tracks.pop(cid)
        info.mid = mid or ""
        published = PublishedTrack(self, info)
        self.tracks[info.sid] = published
        self._tasks.spawn(self._forward(published, track), f"forward {info.sid}")
        self.changed()
        self.room.track_published(published)

    async def _forward(self, published: PublishedTrack, track: MediaStreamTrack) -> None:
        await published.fanout.run(track)
        # The media ended (the client removed the track): unpublish it.
        if not self.closed and self.tracks.pop(published.sid, None) is not None:
            for other in self.room.others(self):
                other.unsubscribe(published.sid)
            self.send(
                rtc.SignalResponse(
                    track_unpublished=rtc.TrackUnpublishedResponse(track_sid=published.sid)
                )
            )
            self.changed()

    def _on_mute(self, req: rtc.MuteTrackRequest) -> None:
        track = self.tracks.get(req.sid)
        infos = [track.info] if track else list(self._pending_tracks.values())
        for info in infos:
            if info.sid == req.sid:
                info.muted = req.muted
        if track is not None:
            self.changed()

    def _on_update_metadata(self, req: rtc.UpdateParticipantMetadata) -> None:
        self.metadata = req.metadata
        if req.name:
            self.name = req.name
        for key, value in req.attributes.items():
            if value:
                self.attributes[key] = value
            else:
                self.attributes.pop(key, None)  # an empty value deletes the attribute
        self.changed()
        if req.request_id:
            self.send(
                rtc.SignalResponse(
                    request_response=rtc.RequestResponse(
                        request_id=req.request_id, reason=rtc.RequestResponse.Reason.OK
                    )
                )
            )

    # -- data ----------------------------------------------------------------------

    def _on_client_channel(self, channel: RTCDataChannel) -> None:
        label = channel.label
        if label not in (RELIABLE, LOSSY):
            return  # `_data_track` carries data tracks, which this server does not route

        def on_message(message: bytes | str) -> None:
            if isinstance(message, bytes):
                self.room.forward_data(self, label, message)

        channel.on("message", on_message)

    def deliver_data(self, label: str, data: bytes) -> None:
        channel = self._sub_channels.get(label)
        if channel is not None and channel.readyState == "open" and not self._backlog:
            channel.send(data)
            self.data_forwarded += 1
            return
        if len(self._backlog) >= DATA_BACKLOG:
            self._backlog.popleft()
            self.data_dropped += 1
        self._backlog.append((label, data))

    def _flush_backlog(self) -> None:
        while self._backlog:
            label, data = self._backlog[0]
            channel = self._sub_channels[label]
            if channel.readyState != "open":
                return
            self._backlog.popleft()
            channel.send(data)
            self.data_forwarded += 1

    # -- subscriber connection -----------------------------------------------------

    def subscribe(self, track: PublishedTrack) -> None:
        """Send `track` to this participant. Its owner's info must already be known here."""
        if self.closed or track.sid in self.subscriptions or track.owner is self:
            return
        relay = RelayTrack(
            "audio" if track.info.type == models.TrackType.AUDIO else "video", track.sid
        )
        transceiver = self._sub.addTransceiver(relay, direction="sendonly")
        # The SDK maps the media to its participant and track by the msid stream id.
        transceiver.sender._stream_id = f"{track.owner.sid}|{track.sid}"
        track.fanout.add(relay)
        self.subscriptions[track.sid] = Subscription(track, relay)
        self._negotiate.set()

    def unsubscribe(self, track_sid: str) -> None:
        sub = self.subscriptions.pop(track_sid, None)
        if sub is not None:
            sub.track.fanout.remove(sub.relay)

    def _on_subscription(self, req: rtc.UpdateSubscription) -> None:
        sids = list(req.track_sids)
        for pt in req.participant_tracks:
            sids.extend(pt.track_sids)
        for sid in sids:
            if not req.subscribe:
                self.unsubscribe(sid)
            elif (track := self.room.find_track(sid)) is not None and self.grants.can_subscribe:
                self.subscribe(track)

    async def _negotiator(self) -> None:
        while True:
            await self._negotiate.wait()
            self._negotiate.clear()
            self._answered.clear()
            await self._sub.setLocalDescription(await self._sub.createOffer())
            self._offer_id += 1
            offer = rtc.SessionDescription(
                type="offer", sdp=self._sub.localDescription.sdp, id=self._offer_id
            )
            self.send(rtc.SignalResponse(offer=offer))
            try:
                await asyncio.wait_for(self._answered.wait(), ANSWER_TIMEOUT_S)
            except TimeoutError:
                log.warning("%s: no answer to subscriber offer %d", self.identity, self._offer_id)

    async def _on_subscriber_answer(self, answer: rtc.SessionDescription) -> None:
        await self._sub.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        await self._flush_candidates(SUBSCRIBER)
        self._answered.set()
        for sub in self.subscriptions.values():
            if not sub.confirmed:
                sub.confirmed = True
                # The publisher's SDK waits for this before it sends audio (agents' output).
                sub.track.owner.send(
                    rtc.SignalResponse(
                        track_subscribed=rtc.TrackSubscribed(track_sid=sub.track.sid)
                    )
                )

    # -- ICE -----------------------------------------------------------------------

    async def _on_trickle(self, trickle: rtc.TrickleRequest) -> None:
        candidate = parse_candidate(trickle.candidateInit)
        target = SUBSCRIBER if trickle.target == SUBSCRIBER else PUBLISHER
        pc = self._sub if target == SUBSCRIBER else self._pub
        if pc.remoteDescription is None:
            self._candidates[target].append(candidate)  # arrived before the description
        else:
            await pc.addIceCandidate(candidate)

    async def _flush_candidates(self, target: int) -> None:
        pc = self._sub if target == SUBSCRIBER else self._pub
        pending, self._candidates[target] = self._candidates[target], []
        for candidate in pending:
            await pc.addIceCandidate(candidate)

    # -- teardown ------------------------------------------------------------------

    async def close(self, reason: Any = None) -> None:
        """Leave the room. With a `reason` the client is told (server-initiated leave)."""
        if self.closed:
            return
        if reason is not None:
            leave = rtc.LeaveRequest(
                can_reconnect=False, reason=reason, action=rtc.LeaveRequest.Action.DISCONNECT
            )
            self.send(rtc.SignalResponse(leave=leave))
        self.closed = True
        self.state = State.DISCONNECTED
        self.room.remove(self)
        for sub in list(self.subscriptions.values()):
            sub.track.fanout.remove(sub.relay)
        self.subscriptions.clear()
        if self._writer_task is not None and not self._out.full():
            # Let the writer flush what is queued (a leave, say), then stop.
            self._out.put_nowait(None)
            await asyncio.wait([self._writer_task], timeout=1.0)
        await self._tasks.close()
        await close_peer_connection(self._pub)
        await close_peer_connection(self._sub)
        await self.ws.close()


def _now_ms() -> int:
    return int(time.time() * 1000)
