"""The LiveKit adapter over an rtc.Room that has not connected (no server needed)."""

from __future__ import annotations

from livekit import rtc

from agent.worker.room import LiveKitRoom


async def test_unconnected_room() -> None:
    room = rtc.Room()
    port = LiveKitRoom(room)
    assert not port.connected
    assert port.peers() == []
    assert port.microphone("alice") is None
    await port.set_attributes({"lk.agent.state": "listening"})  # ignored while disconnected
