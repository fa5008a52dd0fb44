"""The server: rooms, signaling on /rtc, agents on /agent, Twirp, and /debug/state."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import twirp
from .agents import AgentService
from .auth import AuthError, KeyRing, bearer_token
from .media import LIVE_PEER_CONNECTIONS, pin_ice_host
from .participant import Participant
from .room import Room
from .tasks import TaskOwner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str
    port: int
    keys: Mapping[str, str] = field(default_factory=lambda: {"devkey": "secret"})
    # A room closes this long after its last human leaves (agents alone do not keep it).
    departure_timeout: float = 1.0
    # A room nobody human ever joined (created by a dispatch) closes after this.
    empty_timeout: float = 30.0

    def __repr__(self) -> str:
        return f"ServerConfig(host={self.host!r}, port={self.port}, keys={sorted(self.keys)})"


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.keys = KeyRing(config.keys)
        self.tasks = TaskOwner("server")
        self.rooms: dict[str, Room] = {}
        self.closed_rooms: deque[dict[str, Any]] = deque(maxlen=200)
        self.agents = AgentService(self)
        self.port = config.port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    def room(self, name: str) -> Room:
        """The open room `name`, created (and agents dispatched to it) if needed."""
        existing = self.rooms.get(name)
        if existing is not None and not existing.closed:
            return existing
        created = Room(
            self,
            name,
            departure_timeout=self.config.departure_timeout,
            empty_timeout=self.config.empty_timeout,
        )
        self.rooms[name] = created
        return created

    def room_closed(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        self.closed_rooms.append(room.state())
        for record in self.agents.jobs.values():
            if record.room is room:
                self.tasks.spawn(self.agents.terminate(record), f"terminate {record.job.id}")

    # -- HTTP handlers -------------------------------------------------------------------

    async def handle_rtc(self, request: web.Request) -> web.StreamResponse:
        try:
            grants = self.keys.verify(bearer_token(request))
        except AuthError as exc:
            return web.Response(status=401, text=str(exc))
        if not grants.room_join or not grants.room or not grants.identity:
            return web.Response(status=401, text="token lacks roomJoin, room or identity")
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        existing = self.rooms.get(grants.room)
        room = self.room(grants.room)
        if existing is not room:
            # A room created by its first participant gets its agents: those the token
            # names (explicit dispatch), otherwise the automatic (unnamed) one.
            for requested in grants.agents or ():
                self.agents.dispatch(room, requested.agent_name, requested.metadata)
            if not grants.agents:
                self.agents.dispatch(room, "", "")
        auto_subscribe = request.query.get("auto_subscribe", "1") not in ("0", "false")
        participant = Participant(room, grants, ws, auto_subscribe=auto_subscribe)
        await participant.run()
        return ws

    async def handle_rtc_v1(self, request: web.Request) -> web.StreamResponse:
        # No single-PC mode: a 404 makes the SDK fall back to /rtc with two peer connections.
        return web.Response(status=404, text="single peer connection mode is not supported")

    async def handle_validate(self, request: web.Request) -> web.StreamResponse:
        try:
            self.keys.verify(bearer_token(request))
        except AuthError as exc:
            return web.Response(status=401, text=str(exc))
        return web.Response(text="success")

    async def handle_twirp(self, request: web.Request) -> web.StreamResponse:
        return await twirp.handle(self, request)

    async def handle_root(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="OK")  # livekit-server's health answer

    async def handle_state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state())

    def state(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "rooms": [r.state() for r in self.rooms.values()],
            "closed_rooms": list(self.closed_rooms),
            **self.agents.state(),
            "peer_connections": len(LIVE_PEER_CONNECTIONS),
            "server_tasks": len(self.tasks),
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.handle_root)
        app.router.add_get("/rtc/v1", self.handle_rtc_v1)
        app.router.add_get("/rtc/validate", self.handle_validate)
        app.router.add_get("/rtc/v1/validate", self.handle_rtc_v1)
        app.router.add_get("/rtc", self.handle_rtc)
        app.router.add_get("/agent", self.agents.handle)
        app.router.add_post("/twirp/{service}/{method}", self.handle_twirp)
        app.router.add_get("/debug/state", self.handle_state)
        return app

    async def start(self) -> None:
        """Listen on config.host:config.port (port 0 picks a free one, see `port`)."""
        pin_ice_host(self.config.host)
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, shutdown_timeout=1.0)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])
            break

    async def stop(self) -> None:
        for room in list(self.rooms.values()):
            await room.close("server shutdown")
        await self.tasks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
