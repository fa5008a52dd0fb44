"""The LiveKit test server against the real SDKs: rtc caller ↔ caller, tokens, the agent
protocol with a raw worker (automatic dispatch) and with real livekit-agents (explicit).

Runs inside the private network namespace (see test_e2e.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from livekit import api, rtc
from livekit.protocol import agent

from .audio import tone
from .caller import SAMPLE_RATE, Caller, token
from .conftest import TONE_AGENT_NAME
from .harness import LkServer, Proc

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(45)]

FREQ_TOLERANCE = 0.02  # dominant frequency within 2 %
LOUD_DBFS = -35.0


@pytest_asyncio.fixture(loop_scope="session")
async def callers() -> AsyncIterator[list[Caller]]:
    """Callers a test creates; all disconnected at teardown."""
    created: list[Caller] = []
    yield created
    await asyncio.gather(*(c.close() for c in created))


async def join(
    callers: list[Caller], server: LkServer, identity: str, room: str, **kw: Any
) -> Caller:
    caller = Caller(server.url, token(identity, room, **kw))
    callers.append(caller)
    await caller.connect()
    return caller


def assert_tone(heard_hz: float, expected_hz: float) -> None:
    assert abs(heard_hz - expected_hz) <= expected_hz * FREQ_TOLERANCE, (
        f"dominant frequency {heard_hz:.1f} Hz, expected {expected_hz} Hz"
    )


async def test_caller_hears_caller_and_data_flows(
    lkserver: LkServer, callers: list[Caller]
) -> None:
    alice = await join(callers, lkserver, "alice", "t-callers")
    await alice.publish_microphone()
    bob = await join(callers, lkserver, "bob", "t-callers")
    await bob.wait_for(lambda: "alice" in bob.recordings, 10, "alice's track")

    said = alice.say(tone(440, 1.5, SAMPLE_RATE))
    await asyncio.wait_for(said.finished.wait(), 5)
    await asyncio.sleep(0.5)  # transport and jitter buffer
    heard = bob.recordings["alice"]
    loud = heard.loud_seconds(LOUD_DBFS, said.started_at, said.finished_at + 1.0)
    assert loud >= 1.3, f"bob heard {loud:.2f} s of alice's 1.5 s tone"
    assert_tone(heard.dominant_frequency(said.started_at, said.finished_at + 1.0), 440)
    first = heard.first_loud(LOUD_DBFS, said.started_at)
    assert first is not None and first - said.started_at < 1.0

    # Data: a text stream to bob, and RPC (both ride on forwarded data packets).
    await alice.room.local_participant.send_text(
        "hello bob", topic="lk.transcription", attributes={"lk.transcription_final": "true"}
    )

    async def echo(data: rtc.RpcInvocationData) -> str:
        return f"{data.caller_identity}:{data.payload}"

    bob.room.local_participant.register_rpc_method("echo", echo)

    reply = await alice.room.local_participant.perform_rpc(
        destination_identity="bob", method="echo", payload="ping", response_timeout=5
    )
    assert reply == "alice:ping"
    await bob.wait_for(lambda: bob.transcript("alice") == "hello bob", 5, "alice's text stream")

    state = await lkserver.state()
    room = LkServer.room(state, "t-callers")
    assert room is not None
    assert {p["identity"]: p["state"] for p in room["participants"]} == {
        "alice": "ACTIVE",
        "bob": "ACTIVE",
    }


async def test_bad_tokens_are_refused(lkserver: LkServer) -> None:
    forged = token("mallory", "t-forged", api_secret="not-the-secret")
    room = rtc.Room()
    with pytest.raises(rtc.ConnectError):
        await asyncio.wait_for(room.connect(lkserver.url, forged), 15)
    good = token("alice", "t-forged")
    async with aiohttp.ClientSession() as http:
        for bearer, status in ((forged, 401), ("", 401), (good, 200)):
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            async with http.get(f"{lkserver.http_url}/rtc/validate", headers=headers) as r:
                assert r.status == status
        # A participant token is not a worker token.
        headers = {"Authorization": f"Bearer {good}"}
        async with http.get(f"{lkserver.http_url}/agent", headers=headers) as r:
            assert r.status == 401
    state = await lkserver.state()
    assert LkServer.room(state, "t-forged") is None


def worker_token(server: LkServer) -> str:
    grants = api.VideoGrants(agent=True)
    return api.AccessToken(server.api_key, server.api_secret).with_grants(grants).to_jwt()


async def expect(ws: aiohttp.ClientWebSocketResponse, kind: str, room: str) -> agent.ServerMessage:
    """The next server message of `kind`. Job offers for other rooms (automatic jobs of
    earlier tests' rooms that are still open) are declined on the way."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        message = agent.ServerMessage.FromString(msg.data)
        which = message.WhichOneof("message")
        if which == "availability" and message.availability.job.room.name != room:
            decline = agent.AvailabilityResponse(
                job_id=message.availability.job.id, available=False
            )
            await ws.send_bytes(agent.WorkerMessage(availability=decline).SerializeToString())
            continue
        assert which == kind, message
        return message


async def test_agent_protocol_automatic_dispatch(lkserver: LkServer, callers: list[Caller]) -> None:
    """A raw protocol worker (empty agent name) gets the room's job, joins with the assigned
    token, reports its status, and is answered on ping."""
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {worker_token(lkserver)}"}
        async with http.ws_connect(f"{lkserver.url}/agent", headers=headers) as ws:
            register = agent.RegisterWorkerRequest(
                type=agent.JobType.JT_ROOM, agent_name="", version="raw-test"
            )
            await ws.send_bytes(agent.WorkerMessage(register=register).SerializeToString())
            first = await expect(ws, "register", "t-auto")
            assert first.register.worker_id

            caller = await join(callers, lkserver, "auto-caller", "t-auto")
            offer = await expect(ws, "availability", "t-auto")
            job = offer.availability.job
            assert job.agent_name == ""
            answer = agent.AvailabilityResponse(
                job_id=job.id, available=True, participant_identity="raw-agent"
            )
            await ws.send_bytes(agent.WorkerMessage(availability=answer).SerializeToString())
            assigned = await expect(ws, "assignment", "t-auto")
            assert assigned.assignment.job.id == job.id
            assert assigned.assignment.url == lkserver.url
            claims = api.TokenVerifier(lkserver.api_key, lkserver.api_secret).verify(
                assigned.assignment.token
            )
            assert (claims.identity, claims.kind) == ("raw-agent", "agent")
            assert claims.video is not None and claims.video.room == "t-auto"

            # The assigned token joins the room, as an agent the caller can see.
            agent_room = rtc.Room()
            await asyncio.wait_for(agent_room.connect(lkserver.url, assigned.assignment.token), 15)
            try:
                await caller.wait_for(lambda: caller.agents(), 10, "the agent participant")
                running = agent.UpdateJobStatus(job_id=job.id, status=agent.JobStatus.JS_RUNNING)
                await ws.send_bytes(agent.WorkerMessage(update_job=running).SerializeToString())
                ping = agent.WorkerPing(timestamp=12345)
                await ws.send_bytes(agent.WorkerMessage(ping=ping).SerializeToString())
                pong = await expect(ws, "pong", "t-auto")
                assert pong.pong.last_timestamp == 12345

                # Deleting the room terminates its job; the worker then reports it ended.
                async with api.LiveKitAPI(
                    lkserver.url, lkserver.api_key, lkserver.api_secret
                ) as lk:
                    await lk.room.delete_room(api.DeleteRoomRequest(room="t-auto"))
                ended = await expect(ws, "termination", "t-auto")
                assert ended.termination.job_id == job.id
                done = agent.UpdateJobStatus(job_id=job.id, status=agent.JobStatus.JS_SUCCESS)
                await ws.send_bytes(agent.WorkerMessage(update_job=done).SerializeToString())
                state = await lkserver.wait_state(
                    lambda s: (
                        LkServer.jobs(s, "t-auto")
                        and LkServer.jobs(s, "t-auto")[0]["status"] == "JS_SUCCESS"
                    ),
                    5,
                    "the job's JS_SUCCESS",
                )
                (record,) = LkServer.jobs(state, "t-auto")
                assert record["history"] == ["JS_PENDING", "JS_RUNNING", "JS_SUCCESS"]
                assert record["participant_identity"] == "raw-agent"
                assert LkServer.room(state, "t-auto") is None
                await caller.wait_for(
                    lambda: caller.room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED,
                    5,
                    "the caller to be disconnected from the deleted room",
                )
            finally:
                await agent_room.disconnect()


async def test_livekit_agents_worker_explicit_dispatch(
    lkserver: LkServer, tone_worker: Proc, callers: list[Caller], metrics: dict[str, Any]
) -> None:
    """A real livekit-agents worker, dispatched by the token's roomConfig with metadata:
    it joins, both sides hear each other's tone, text streams arrive, and when the caller
    leaves the job reports JS_SUCCESS and the room closes without leaking connections."""
    started = time.monotonic()
    caller = await join(
        callers,
        lkserver,
        "tone-caller",
        "t-tone",
        agents=[(TONE_AGENT_NAME, json.dumps({"hz": 660}))],
    )
    await caller.publish_microphone()
    recording = await caller.wait_for(
        lambda: next(iter(caller.recordings.values()), None), 30, "the agent's audio track"
    )
    metrics["tone_agent_join_s"] = round(time.monotonic() - started, 2)
    (agent_participant,) = caller.agents()
    assert agent_participant.attributes.get("lk.agent.name") == TONE_AGENT_NAME
    caller.say(tone(440, 2.0, SAMPLE_RATE))
    await caller.wait_for(
        lambda: agent_participant.attributes.get("heard_hz"), 15, "the agent's heard_hz"
    )
    assert_tone(float(agent_participant.attributes["heard_hz"]), 440)
    await caller.wait_for(lambda: caller.transcript(), 10, "the agent's text stream")
    assert caller.transcript(agent_participant.identity) == "tone 660 Hz played"
    await caller.wait_for(
        lambda: recording.loud_seconds(LOUD_DBFS, 0, time.monotonic()) >= 1.7,
        10,
        "1.7 s of the agent's 2 s tone",
    )
    assert_tone(recording.dominant_frequency(0, time.monotonic()), 660)

    await caller.close()
    state = await lkserver.wait_state(
        lambda s: (
            LkServer.room(s, "t-tone") is None
            and LkServer.jobs(s, "t-tone")[0]["status"] != "JS_RUNNING"
        ),
        20,
        "job end and room close",
    )
    (job,) = LkServer.jobs(state, "t-tone")
    assert job["status"] == "JS_SUCCESS", job
    assert job["metadata"] == json.dumps({"hz": 660})
    closed = next(r for r in state["closed_rooms"] if r["name"] == "t-tone")
    assert closed["participants"] == []


async def test_dispatch_api_with_metadata(
    lkserver: LkServer, tone_worker: Proc, callers: list[Caller]
) -> None:
    """Explicit dispatch through AgentDispatchService/CreateDispatch (livekit-api)."""
    async with api.LiveKitAPI(lkserver.url, lkserver.api_key, lkserver.api_secret) as lk:
        dispatch = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(
                agent_name=TONE_AGENT_NAME, room="t-api", metadata=json.dumps({"hz": 520})
            )
        )
        assert dispatch.id.startswith("AD_") and dispatch.room == "t-api"
        listed = await lk.agent_dispatch.list_dispatch("t-api")
        assert [d.id for d in listed] == [dispatch.id]
    caller = await join(callers, lkserver, "api-caller", "t-api")
    await caller.publish_microphone()
    recording = await caller.wait_for(
        lambda: next(iter(caller.recordings.values()), None), 30, "the agent's audio track"
    )
    caller.say(tone(440, 2.0, SAMPLE_RATE))
    await caller.wait_for(
        lambda: recording.loud_seconds(LOUD_DBFS, 0, time.monotonic()) >= 1.5,
        15,
        "1.5 s of the agent's tone",
    )
    assert_tone(recording.dominant_frequency(0, time.monotonic()), 520)
