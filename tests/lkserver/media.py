"""aiortc plumbing: ICE pinned to one address, track fan-out to subscribers, SDP helpers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aioice.ice
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceCandidate, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

log = logging.getLogger(__name__)

# Frames a subscriber may lag before the oldest is dropped: small, so a subscriber whose
# sender starts late does not replay a burst of stale audio.
RELAY_QUEUE_FRAMES = 10


def pin_ice_host(host: str) -> None:
    """Gather ICE host candidates on `host` only.

    aioice drops 127.0.0.1 and would otherwise offer every interface; the test network
    namespace has exactly the address we listen on.
    """

    def addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [host]

    setattr(aioice.ice, "get_host_addresses", addresses)  # noqa: B010


# Every peer connection the server holds, so a test can see that none leak.
LIVE_PEER_CONNECTIONS: set[RTCPeerConnection] = set()


def new_peer_connection() -> RTCPeerConnection:
    # No STUN/TURN: the default would look up stun.l.google.com.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    LIVE_PEER_CONNECTIONS.add(pc)
    return pc


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    try:
        await pc.close()
    finally:
        LIVE_PEER_CONNECTIONS.discard(pc)


def parse_candidate(candidate_init: str) -> RTCIceCandidate | None:
    """A trickled client candidate (JSON RTCIceCandidateInit); None means end-of-candidates."""
    init: dict[str, Any] = json.loads(candidate_init)
    line = str(init.get("candidate") or "")
    if not line:
        return None
    candidate = candidate_from_sdp(line.removeprefix("candidate:"))
    candidate.sdpMid = init.get("sdpMid")
    candidate.sdpMLineIndex = init.get("sdpMLineIndex")
    return candidate


def track_ids_by_mid(sdp: str) -> dict[str, str]:
    """mid → the msid track id of each media section.

    libwebrtc writes `a=msid:- <cid>`; aiortc ignores the `-` stream form, so the
    client's track cid is read from the raw SDP.
    """
    result: dict[str, str] = {}
    mid: str | None = None
    track_id: str | None = None
    for raw in [*sdp.splitlines(), "m=end"]:
        line = raw.strip()
        if line.startswith("m="):
            if mid is not None and track_id is not None:
                result[mid] = track_id
            mid = track_id = None
        elif line.startswith("a=mid:"):
            mid = line.removeprefix("a=mid:")
        elif line.startswith("a=msid:"):
            parts = line.removeprefix("a=msid:").split()
            track_id = parts[-1] if parts else None
    return result


class RelayTrack(MediaStreamTrack):
    """What one subscriber's sender reads: frames pushed by a Fanout, ending with it.

    Its id is the publisher's track sid, which the SDP msid must carry.
    """

    def __init__(self, kind: str, track_sid: str) -> None:
        super().__init__()
        self.kind = kind
        self._track_sid = track_sid
        self._queue: asyncio.Queue[Any] = asyncio.Queue(RELAY_QUEUE_FRAMES)
        self.dropped = 0

    @property
    def id(self) -> str:
        return self._track_sid

    def push(self, frame: Any) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    def end(self) -> None:
        self.push(None)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


class Fanout:
    """Reads a published (remote) track once and pushes every frame to each subscriber."""

    def __init__(self) -> None:
        self._sinks: set[RelayTrack] = set()
        self.frames = 0
        self.ended = False

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    def add(self, sink: RelayTrack) -> None:
        if self.ended:
            sink.end()
        else:
            self._sinks.add(sink)

    def remove(self, sink: RelayTrack) -> None:
        if sink in self._sinks:
            self._sinks.discard(sink)
            sink.end()

    async def run(self, source: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await source.recv()
                self.frames += 1
                for sink in self._sinks:
                    sink.push(frame)
        except MediaStreamError:
            pass
        finally:
            self.ended = True
            for sink in self._sinks:
                sink.end()
            self._sinks.clear()
