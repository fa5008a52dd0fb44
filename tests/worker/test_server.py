"""The AgentServer side: dispatch answers, load reporting, drain signalling (with the real
livekit-agents AgentServer, unregistered, so no LiveKit server is needed)."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from livekit.agents import JobRequest
from livekit.agents.job import JobAcceptArguments
from livekit.protocol import agent, models

from agent.worker.drain import DrainFlag, flag_path_from_env, wait_for_drain
from agent.worker.server import build_server, make_load_fnc, make_request_fnc
from agent.worker.settings import Settings


def job_request(metadata: str = "") -> tuple[JobRequest, dict[str, Any]]:
    answer: dict[str, Any] = {}

    async def on_reject(terminate: bool) -> None:
        answer["rejected"] = True
        answer["terminate"] = terminate

    async def on_accept(args: JobAcceptArguments) -> None:
        answer["accepted"] = args

    job = agent.Job(id="AJ_1", room=models.Room(name="lobby", sid="RM_1"), metadata=metadata)
    return JobRequest(job=job, on_reject=on_reject, on_accept=on_accept), answer


def fake_server(active_jobs: int) -> Any:
    return SimpleNamespace(active_jobs=[object()] * active_jobs)


def providers() -> list[str]:
    return ["nova", "scripted"]


async def test_request_with_good_metadata_is_accepted(settings: Settings) -> None:
    request, answer = job_request('{"voice": "amy"}')
    on_request = make_request_fnc(
        replace(settings, agent_name="support"), fake_server(0), available_providers=providers
    )
    await on_request(request)
    accepted = answer["accepted"]
    assert accepted.identity == "agent-AJ_1"
    assert accepted.name == "support"


@pytest.mark.parametrize("metadata", ["{oops", '{"provider": "nope"}', '{"voice": 1}'])
async def test_request_with_bad_metadata_is_rejected_with_a_reason(
    settings: Settings, metadata: str, caplog: pytest.LogCaptureFixture
) -> None:
    request, answer = job_request(metadata)
    on_request = make_request_fnc(settings, fake_server(0), available_providers=providers)
    with caplog.at_level(logging.ERROR, logger="agent.worker.server"):
        await on_request(request)
    assert answer == {"rejected": True, "terminate": True}
    assert "rejecting job AJ_1 (room 'lobby')" in caplog.text


async def test_request_beyond_capacity_is_declined_for_another_worker(settings: Settings) -> None:
    request, answer = job_request()
    on_request = make_request_fnc(
        replace(settings, max_jobs=2), fake_server(2), available_providers=providers
    )
    await on_request(request)
    assert answer == {"rejected": True, "terminate": False}


def test_load_is_the_busier_of_slots_and_cpu() -> None:
    load = make_load_fnc(4, cpu=lambda server: 0.1)
    assert load(fake_server(0)) == pytest.approx(0.1)
    assert load(fake_server(2)) == pytest.approx(0.5)
    assert load(fake_server(9)) == 1.0
    busy = make_load_fnc(4, cpu=lambda server: 0.95)
    assert busy(fake_server(1)) == pytest.approx(0.95)


def test_idle_two_core_machine_takes_jobs_in_both_modes(settings: Settings) -> None:
    # Idle: no jobs, a little CPU from prewarmed processes. Both thresholds admit it.
    load = make_load_fnc(settings.max_jobs, cpu=lambda server: 0.3)(fake_server(0))
    assert load < settings.threshold_for(dev=False)
    assert math.isinf(settings.threshold_for(dev=True))


def test_server_is_configured_from_settings(tmp_path: Path) -> None:
    flag = DrainFlag()
    try:
        settings = Settings(
            livekit_url="ws://10.0.0.5:7880",
            agent_name="support",
            load_threshold=0.6,
            drain_timeout_s=12,
            http_port=0,
        )
        server = build_server(settings, dev=False, drain_flag=flag)
        assert server._ws_url == "ws://10.0.0.5:7880"
        assert server._agent_name == "support"  # explicit dispatch
        assert server._load_threshold == 0.6
        assert server._drain_timeout == 12
        auto = build_server(
            replace(settings, agent_name="", load_threshold=None), dev=True, drain_flag=flag
        )
        assert auto._agent_name == ""  # automatic dispatch
        assert math.isinf(auto._load_threshold)  # type: ignore[arg-type]
    finally:
        flag.cleanup()


async def test_drain_flag_reaches_a_waiter() -> None:
    flag = DrainFlag()
    try:
        waiter = asyncio.create_task(wait_for_drain(flag.path, poll_s=0.01))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        flag.set()
        await asyncio.wait_for(waiter, 1)
        assert flag.is_set
    finally:
        flag.cleanup()
    assert not flag.path.parent.exists()


async def test_no_flag_means_never_drained() -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(wait_for_drain(None), 0.05)


def test_flag_path_travels_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S2S_DRAIN_FLAG", raising=False)
    flag = DrainFlag()
    try:
        flag.export()
        assert flag_path_from_env() == flag.path
    finally:
        flag.cleanup()
    assert flag_path_from_env() is None


async def test_server_drain_and_close_tell_the_job_processes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("S2S_DRAIN_FLAG", raising=False)
    flag = DrainFlag()
    try:
        server = build_server(
            replace(settings, http_port=0, idle_processes=0), dev=True, drain_flag=flag
        )
        running = asyncio.create_task(server.run(devmode=True, unregistered=True))
        await asyncio.sleep(0.3)
        assert not flag.is_set
        await asyncio.wait_for(server.drain(timeout=2), 3)
        assert flag.is_set and server.draining
        await server.aclose()
        await asyncio.wait_for(running, 5)
    finally:
        flag.cleanup()


async def test_closing_alone_also_sets_the_flag(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("S2S_DRAIN_FLAG", raising=False)
    flag = DrainFlag()
    try:
        server = build_server(
            replace(settings, http_port=0, idle_processes=0), dev=True, drain_flag=flag
        )
        running = asyncio.create_task(server.run(devmode=True, unregistered=True))
        await asyncio.sleep(0.3)
        await server.aclose()  # `dev` shuts down without draining
        assert flag.is_set
        await asyncio.wait_for(running, 5)
    finally:
        flag.cleanup()
