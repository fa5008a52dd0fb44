"""The livekit-agents AgentServer this worker runs: dispatch, load reporting, prewarm, drain."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from livekit.agents import AgentServer, JobExecutorType, JobProcess, JobRequest
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.worker import _DefaultLoadCalc

from agent import s2s

from .drain import DrainFlag
from .entry import entrypoint
from .metadata import MetadataError, job_options
from .settings import Settings
from .toolset import load_tools

log = logging.getLogger(__name__)

CpuLoad = Callable[[AgentServer], float]


class S2SAgentServer(AgentServer):
    """An AgentServer that tells its job processes when it drains or closes (see drain.py),
    so each conversation finishes its current turn and ends instead of being cut off."""

    def __init__(self, *, drain_flag: DrainFlag, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drain_flag = drain_flag

    async def drain(self, timeout: NotGivenOr[int | None] = NOT_GIVEN) -> None:  # noqa: ASYNC109
        if not self.drain_flag.is_set:
            log.info(
                "draining: no new jobs; %d active conversation(s) finish their current turn",
                len(self.active_jobs),
            )
        self.drain_flag.set()
        await super().drain(timeout)

    async def aclose(self) -> None:
        self.drain_flag.set()
        await super().aclose()


def make_load_fnc(max_jobs: int, cpu: CpuLoad = _DefaultLoadCalc.get_load) -> CpuLoad:
    """Load in [0, 1]: the busier of job slots used (of `max_jobs`) and machine CPU."""

    def load(server: AgentServer) -> float:
        slots = len(server.active_jobs) / max_jobs
        return min(1.0, max(slots, cpu(server)))

    return load


def make_request_fnc(
    settings: Settings,
    server: AgentServer,
    *,
    available_providers: Callable[[], list[str]] = s2s.providers,
) -> Callable[[JobRequest], Any]:
    async def on_request(request: JobRequest) -> None:
        where = f"job {request.id} (room {request.room.name!r})"
        try:
            options = job_options(
                settings, request.job.metadata, available_providers=available_providers
            )
        except MetadataError as exc:
            # terminate: no other worker would do better with the same metadata.
            log.error("rejecting %s: %s", where, exc)
            await request.reject(terminate=True)
            return
        active = len(server.active_jobs)
        if active >= settings.max_jobs:
            log.warning("declining %s: %d of %d job slots in use", where, active, settings.max_jobs)
            await request.reject(terminate=False)
            return
        log.info("accepting %s with provider %s", where, options.provider)
        await request.accept(
            name=settings.agent_name or "agent",
            identity=f"agent-{request.id}",
        )

    return on_request


def prewarm(proc: JobProcess) -> None:
    """Runs once in each job process before it takes a job: import the providers and the
    user's tool modules so the first reply isn't slowed by imports."""
    settings = Settings.from_env()
    s2s.providers()
    load_tools(settings.tools_modules)
    proc.userdata["settings"] = settings


def build_server(settings: Settings, *, dev: bool, drain_flag: DrainFlag) -> S2SAgentServer:
    kwargs: dict[str, Any] = {
        "ws_url": settings.livekit_url,
        "api_key": settings.api_key,
        "api_secret": settings.api_secret,
        "load_threshold": settings.threshold_for(dev=dev),
        "drain_timeout": settings.drain_timeout_s,
        "setup_fnc": prewarm,
        "load_fnc": make_load_fnc(settings.max_jobs),
        "preload_modules": ["agent.worker.entry"],
        # Connect fails fast (about a minute of retries) instead of livekit's ~2.5 minutes.
        "max_retry": 8,
    }
    if settings.http_port is not None:
        kwargs["port"] = settings.http_port
    if settings.idle_processes is not None:
        kwargs["num_idle_processes"] = settings.idle_processes
    server = S2SAgentServer(
        drain_flag=drain_flag, job_executor_type=JobExecutorType.PROCESS, **kwargs
    )
    server.rtc_session(
        entrypoint,
        agent_name=settings.agent_name,
        on_request=make_request_fnc(settings, server),
    )
    return server


def describe(settings: Settings, *, dev: bool) -> dict[str, Any]:
    """What the worker runs with, for its start-up log line (no secrets)."""
    threshold = settings.threshold_for(dev=dev)
    return {
        "url": settings.livekit_url,
        "dispatch": f"explicit ({settings.agent_name})" if settings.agent_name else "automatic",
        "provider": settings.provider,
        "load_threshold": "off" if threshold == float("inf") else threshold,
        "max_jobs": settings.max_jobs,
        "drain_timeout_s": settings.drain_timeout_s,
        "tools_modules": list(settings.tools_modules),
        "idle_processes": settings.idle_processes
        if settings.idle_processes is not None
        else "livekit default",
    }
