"""Running the worker: `dev` and `start` through livekit-agents' own worker runner (signals,
drain, logging), `connect` as a single job in one named room."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from livekit import api
from livekit.agents import AgentServer
from livekit.agents.cli import proto
from livekit.agents.cli.cli import _run_worker
from livekit.agents.cli.log import setup_logging
from livekit.protocol import models

from .drain import DrainFlag
from .server import build_server, describe
from .settings import Settings

log = logging.getLogger("agent.worker")

EXIT_OK = 0
EXIT_FAILED = 1
JOB_POLL_S = 0.5


def run_worker(settings: Settings, *, dev: bool, log_level: str, log_format: str) -> int:
    """`dev` / `start`: register with the server and take dispatched jobs until signalled.
    On SIGTERM/SIGINT `start` drains (no new jobs; conversations finish their turn, bounded by
    the drain timeout); `dev` closes at once. A second signal exits immediately."""
    flag = DrainFlag()
    flag.export()
    try:
        server = build_server(settings, dev=dev, drain_flag=flag)
        _log_when_started(server, settings, dev=dev)
        _run_worker(
            server,
            proto.CliArgs(
                log_level=log_level,
                url=settings.livekit_url,
                api_key=settings.api_key,
                api_secret=settings.api_secret,
                log_format=log_format,
                dev=dev,
            ),
        )
    finally:
        flag.cleanup()
    if getattr(server, "_connection_failed", False):
        print(
            f"gave up connecting to the LiveKit server at {settings.livekit_url}; check that it"
            " is running and that LIVEKIT_API_KEY / LIVEKIT_API_SECRET match its keys",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def run_connect(settings: Settings, *, room: str, identity: str | None, log_level: str) -> int:
    """`connect`: join `room` right away (no dispatch) as one job; exit when it ends."""
    setup_logging(log_level, devmode=True, console=False)
    flag = DrainFlag()
    flag.export()
    try:
        server = build_server(settings, dev=True, drain_flag=flag)
        _log_when_started(server, settings, dev=True)
        return asyncio.run(_connect(server, settings, room, identity or f"agent-{room}"))
    finally:
        flag.cleanup()


async def _connect(server: AgentServer, settings: Settings, room: str, identity: str) -> int:
    loop = asyncio.get_running_loop()
    signals = asyncio.Queue[int](maxsize=4)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    started: asyncio.Future[None] = loop.create_future()

    def on_started(*_: object) -> None:
        if not started.done():
            started.set_result(None)

    server.once("worker_started", on_started)
    run_task = asyncio.create_task(server.run(devmode=True, unregistered=True))
    try:
        await asyncio.wait({started, run_task}, return_when=asyncio.FIRST_COMPLETED)
        if run_task.done():
            run_task.result()  # raises what stopped it
            return EXIT_FAILED
        room_info = await _room_info(settings, room)
        log.info("joining room %r as %s", room, identity)
        await server.simulate_job(
            room=room, fake_job=False, room_info=room_info, agent_identity=identity
        )
        return await _wait_for_job(server, signals, settings.drain_timeout_s)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.aclose()
        with contextlib.suppress(Exception):
            await run_task


async def _wait_for_job(server: AgentServer, signals: asyncio.Queue[int], drain_s: int) -> int:
    """Until the job ends. A first signal drains (the conversation finishes its turn), a second
    closes at once."""
    while server.active_jobs:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signals.get(), JOB_POLL_S)
            log.info("signal received: finishing the conversation (again to stop now)")
            drain = asyncio.create_task(server.drain(timeout=drain_s))
            second = asyncio.create_task(signals.get())
            try:
                await asyncio.wait({drain, second}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (drain, second):
                    task.cancel()
                await asyncio.gather(drain, second, return_exceptions=True)
            return EXIT_OK
    return EXIT_OK


async def _room_info(settings: Settings, room: str) -> models.Room:
    """The room's info from the server API, creating the room if needed. A server without the
    room API (some test servers) still works: the job only needs the name."""
    try:
        async with api.LiveKitAPI(
            settings.livekit_url, settings.api_key, settings.api_secret
        ) as lk:
            rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
            if rooms.rooms:
                return rooms.rooms[0]
            return await lk.room.create_room(api.CreateRoomRequest(name=room))
    except Exception as exc:
        log.warning("room API unavailable (%s); joining %r by name", exc, room)
        return models.Room(name=room)


def _log_when_started(server: AgentServer, settings: Settings, *, dev: bool) -> None:
    def started(*_: object) -> None:
        log.info("s2s worker starting", extra=describe(settings, dev=dev))

    def registered(worker_id: str, *_: object) -> None:
        how = (
            f"explicit dispatch as {settings.agent_name!r}"
            if settings.agent_name
            else ("automatic dispatch")
        )
        log.info(
            "registered with %s as %s; waiting for jobs (%s)", settings.livekit_url, worker_id, how
        )

    server.on("worker_started", started)
    server.on("worker_registered", registered)
