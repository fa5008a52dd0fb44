"""The Twirp endpoints livekit-api calls: agent dispatch and a few room-service methods."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import agent_dispatch, room

from .auth import AuthError, Grants, bearer_token

if TYPE_CHECKING:
    from .agents import JobRecord
    from .server import Server

Handler = Callable[["Server", Grants, Message], Awaitable[Message]]


class TwirpError(Exception):
    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code


def _dispatch_info(record: JobRecord) -> agent_dispatch.AgentDispatch:
    return agent_dispatch.AgentDispatch(
        id=record.job.dispatch_id,
        agent_name=record.job.agent_name,
        room=record.room.name,
        metadata=record.job.metadata,
        state=agent_dispatch.AgentDispatchState(jobs=[record.job]),
    )


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise TwirpError(401, "unauthenticated", f"token lacks {what}")


async def create_dispatch(server: Server, grants: Grants, req: Message) -> Message:
    assert isinstance(req, agent_dispatch.CreateAgentDispatchRequest)
    _require(grants.room_admin or grants.room_create, "roomAdmin")
    if not req.room:
        raise TwirpError(400, "invalid_argument", "room is required")
    record = server.agents.dispatch(server.room(req.room), req.agent_name, req.metadata)
    return _dispatch_info(record)


async def list_dispatch(server: Server, grants: Grants, req: Message) -> Message:
    assert isinstance(req, agent_dispatch.ListAgentDispatchRequest)
    _require(grants.room_admin, "roomAdmin")
    records = [
        r
        for r in server.agents.jobs.values()
        if r.room.name == req.room and not r.room.closed
        if not req.dispatch_id or r.job.dispatch_id == req.dispatch_id
    ]
    return agent_dispatch.ListAgentDispatchResponse(
        agent_dispatches=[_dispatch_info(r) for r in records]
    )


async def create_room(server: Server, grants: Grants, req: Message) -> Message:
    assert isinstance(req, room.CreateRoomRequest)
    _require(grants.room_create, "roomCreate")
    if not req.name:
        raise TwirpError(400, "invalid_argument", "name is required")
    created = server.room(req.name)
    for requested in req.agents:
        server.agents.dispatch(created, requested.agent_name, requested.metadata)
    return created.info()


async def delete_room(server: Server, grants: Grants, req: Message) -> Message:
    assert isinstance(req, room.DeleteRoomRequest)
    _require(grants.room_create or grants.room_admin, "roomCreate")
    existing = server.rooms.get(req.room)
    if existing is None:
        raise TwirpError(404, "not_found", "room not found")
    await existing.close("deleted")
    return room.DeleteRoomResponse()


async def list_rooms(server: Server, grants: Grants, req: Message) -> Message:
    assert isinstance(req, room.ListRoomsRequest)
    _require(grants.room_list or grants.room_admin, "roomList")
    names = set(req.names)
    rooms = [r.info() for r in server.rooms.values() if not names or r.name in names]
    return room.ListRoomsResponse(rooms=rooms)


async def list_participants(server: Server, grants: Grants, req: Message) -> Message:
    assert isinstance(req, room.ListParticipantsRequest)
    _require(grants.room_admin, "roomAdmin")
    existing = server.rooms.get(req.room)
    if existing is None:
        raise TwirpError(404, "not_found", "room not found")
    return room.ListParticipantsResponse(
        participants=[p.info() for p in existing.participants.values()]
    )


METHODS: dict[str, tuple[type[Message], Handler]] = {
    "livekit.AgentDispatchService/CreateDispatch": (
        agent_dispatch.CreateAgentDispatchRequest,
        create_dispatch,
    ),
    "livekit.AgentDispatchService/ListDispatch": (
        agent_dispatch.ListAgentDispatchRequest,
        list_dispatch,
    ),
    "livekit.RoomService/CreateRoom": (room.CreateRoomRequest, create_room),
    "livekit.RoomService/DeleteRoom": (room.DeleteRoomRequest, delete_room),
    "livekit.RoomService/ListRooms": (room.ListRoomsRequest, list_rooms),
    "livekit.RoomService/ListParticipants": (room.ListParticipantsRequest, list_participants),
}


async def handle(server: Server, request: web.Request) -> web.Response:
    as_json = request.content_type == "application/json"
    try:
        method = METHODS.get(f"{request.match_info['service']}/{request.match_info['method']}")
        if method is None:
            raise TwirpError(404, "bad_route", "no such method")
        try:
            grants = server.keys.verify(bearer_token(request))
        except AuthError as exc:
            raise TwirpError(401, "unauthenticated", str(exc)) from None
        request_type, handler = method
        body = await request.read()
        try:
            if as_json:
                req = json_format.Parse(body or b"{}", request_type())
            else:
                req = request_type.FromString(body)
        except (DecodeError, json_format.ParseError):
            raise TwirpError(400, "malformed", "cannot decode the request") from None
        response = await handler(server, grants, req)
    except TwirpError as exc:
        return web.Response(
            status=exc.status,
            content_type="application/json",
            text=json.dumps({"code": exc.code, "msg": str(exc)}),
        )
    if as_json:
        return web.Response(
            content_type="application/json", text=json_format.MessageToJson(response)
        )
    return web.Response(content_type="application/protobuf", body=response.SerializeToString())
