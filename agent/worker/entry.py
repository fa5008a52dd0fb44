"""The job entrypoint livekit-agents runs in a job process for each dispatched room."""

from __future__ import annotations

import logging

from livekit.agents import AutoSubscribe, JobContext

from agent import s2s, telemetry

from .conversation import Conversation
from .drain import flag_path_from_env, wait_for_drain
from .metadata import MetadataError, job_options
from .room import LiveKitRoom
from .settings import Settings
from .toolset import load_tools

log = logging.getLogger(__name__)


async def entrypoint(ctx: JobContext) -> None:
    settings = ctx.proc.userdata.get("settings")
    if not isinstance(settings, Settings):  # prewarm didn't run (thread executor, tests)
        settings = Settings.from_env()
    room_name = ctx.job.room.name
    tools = load_tools(settings.tools_modules)
    try:
        options = job_options(settings, ctx.job.metadata, available_providers=s2s.providers)
    except MetadataError as exc:
        log.error("job %s in room %r not started: %s", ctx.job.id, room_name, exc)
        ctx.shutdown(reason=f"invalid job metadata: {exc}")
        return
    telemetry.configure_from_env()

    # Subscribe to nothing by default: only the chosen participant's microphone is wanted.
    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
    log.info(
        "joined room %r as %s (job %s); waiting for a participant",
        room_name,
        ctx.room.local_participant.identity,
        ctx.job.id,
    )
    flag = flag_path_from_env()
    conversation = Conversation(
        LiveKitRoom(ctx.room),
        options,
        settings,
        tools=tools,
        job_id=ctx.job.id,
        drained=lambda: wait_for_drain(flag),
    )

    async def on_shutdown(reason: str) -> None:
        # Normally a no-op (run() has closed everything); covers a cancelled entrypoint:
        # let a reply in progress finish (bounded), then close.
        await conversation.close(finish_turn=True)

    ctx.add_shutdown_callback(on_shutdown)
    reason = await conversation.run()
    ctx.shutdown(reason=reason)
