"""The agent worker protocol on /agent: registration, dispatch, job status, termination."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from livekit.protocol import agent, models

from .auth import AuthError, bearer_token
from .ids import new_sid

if TYPE_CHECKING:
    from .room import Room
    from .server import Server

log = logging.getLogger(__name__)

AVAILABILITY_TIMEOUT_S = 10.0
MAX_DECLINED_ROUNDS = 3
TERMINAL = (agent.JobStatus.JS_SUCCESS, agent.JobStatus.JS_FAILED, agent.JobStatus.JS_CANCELLED)


@dataclass(slots=True)
class Worker:
    id: str
    agent_name: str
    version: str
    ws: web.WebSocketResponse
    permission: models.ParticipantPermission
    status: int = agent.WorkerStatus.WS_AVAILABLE
    load: float = 0.0
    job_count: int = 0
    connected: bool = True
    pending: dict[str, asyncio.Future[agent.AvailabilityResponse]] = field(default_factory=dict)

    async def send(self, msg: agent.ServerMessage) -> None:
        await self.ws.send_bytes(msg.SerializeToString())


@dataclass(slots=True)
class JobRecord:
    job: agent.Job
    room: Room
    worker_id: str = ""
    participant_identity: str = ""
    assigned: bool = False
    history: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> int:
        return self.job.state.status

    def set_status(self, status: int, error: str = "") -> None:
        now = int(time.time() * 1000)
        state = self.job.state
        if status == agent.JobStatus.JS_RUNNING and not state.started_at:
            state.started_at = now
        if status in TERMINAL:
            state.ended_at = now
            self.done.set()
        state.status = status  # type: ignore[assignment]
        state.error = error
        state.updated_at = now
        self.history.append(agent.JobStatus.Name(status))


class AgentService:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.workers: dict[str, Worker] = {}
        self.jobs: dict[str, JobRecord] = {}
        self._registered = asyncio.Event()  # pulsed whenever a worker registers or frees up

    # -- dispatch ----------------------------------------------------------------------

    def dispatch(self, room: Room, agent_name: str, metadata: str) -> JobRecord:
        job = agent.Job(
            id=new_sid("AJ_"),
            dispatch_id=new_sid("AD_"),
            type=agent.JobType.JT_ROOM,
            room=room.info(),
            agent_name=agent_name,
            metadata=metadata,
        )
        record = JobRecord(job=job, room=room)
        record.set_status(agent.JobStatus.JS_PENDING)
        self.jobs[job.id] = record
        self.server.tasks.spawn(self._assign(record), f"assign {job.id}")
        return record

    def _candidates(self, agent_name: str, tried: set[str]) -> list[Worker]:
        workers = [
            w
            for w in self.workers.values()
            if w.connected
            and w.agent_name == agent_name
            and w.status == agent.WorkerStatus.WS_AVAILABLE
            and w.id not in tried
        ]
        return sorted(workers, key=lambda w: (w.load, w.job_count))

    async def _assign(self, record: JobRecord) -> None:
        """Offer the job to matching workers until one accepts, one refuses it for good
        (terminate), every worker has declined a few rounds, or the room closes."""
        declined_rounds = 0
        tried: set[str] = set()
        while not record.room.closed and record.status == agent.JobStatus.JS_PENDING:
            candidates = self._candidates(record.job.agent_name, tried)
            if not candidates:
                if tried:
                    declined_rounds += 1
                    tried.clear()
                    if declined_rounds >= MAX_DECLINED_ROUNDS:
                        record.set_status(agent.JobStatus.JS_FAILED, "no worker accepted the job")
                        return
                self._registered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._registered.wait(), 1.0)
                continue
            worker = candidates[0]
            tried.add(worker.id)
            if await self._offer(worker, record):
                return
        if not record.assigned and record.status == agent.JobStatus.JS_PENDING:
            record.set_status(agent.JobStatus.JS_CANCELLED, "room closed before assignment")

    async def _offer(self, worker: Worker, record: JobRecord) -> bool:
        job = record.job
        future: asyncio.Future[agent.AvailabilityResponse] = (
            asyncio.get_running_loop().create_future()
        )
        worker.pending[job.id] = future
        try:
            job.room.CopyFrom(record.room.info())
            await worker.send(agent.ServerMessage(availability=agent.AvailabilityRequest(job=job)))
            answer = await asyncio.wait_for(future, AVAILABILITY_TIMEOUT_S)
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            log.warning("worker %s did not answer availability: %r", worker.id, exc)
            return False
        finally:
            worker.pending.pop(job.id, None)
        if not answer.available:
            if answer.terminate:  # the worker says no worker could run it: end the job
                record.set_status(agent.JobStatus.JS_FAILED, "rejected by the worker")
                return True
            return False
        identity = answer.participant_identity or f"agent-{job.id}"
        token = self.server.keys.agent_token(
            room=record.room.name,
            identity=identity,
            name=answer.participant_name or identity,
            metadata=answer.participant_metadata,
            attributes=answer.participant_attributes,
            permission=worker.permission,
        )
        record.worker_id = worker.id
        record.participant_identity = identity
        record.assigned = True
        job.state.worker_id = worker.id
        job.state.participant_identity = identity
        assignment = agent.JobAssignment(job=job, url=self.server.url, token=token)
        try:
            await worker.send(agent.ServerMessage(assignment=assignment))
        except (ConnectionError, RuntimeError):
            record.set_status(agent.JobStatus.JS_FAILED, "worker went away before assignment")
        return True

    async def terminate(self, record: JobRecord) -> None:
        worker = self.workers.get(record.worker_id)
        if worker is None or not worker.connected or record.status in TERMINAL:
            return
        try:
            msg = agent.ServerMessage(termination=agent.JobTermination(job_id=record.job.id))
            await worker.send(msg)
        except (ConnectionError, RuntimeError):
            pass

    # -- the worker connection ---------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            grants = self.server.keys.verify(bearer_token(request))
        except AuthError as exc:
            return web.Response(status=401, text=str(exc))
        if not grants.agent:
            return web.Response(status=401, text="token lacks the agent grant")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        worker: Worker | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                message = agent.WorkerMessage.FromString(msg.data)
                which = message.WhichOneof("message")
                if which == "register":
                    if worker is None:
                        worker = await self._register(ws, message.register)
                elif worker is None:
                    log.warning("worker message %s before register", which)
                    break
                else:
                    await self._on_message(worker, message)
        finally:
            if worker is not None:
                worker.connected = False
                for future in worker.pending.values():
                    future.cancel()
        return ws

    async def _register(
        self, ws: web.WebSocketResponse, req: agent.RegisterWorkerRequest
    ) -> Worker:
        worker = Worker(
            id=new_sid("AW_"),
            agent_name=req.agent_name,
            version=req.version,
            ws=ws,
            permission=req.allowed_permissions,
        )
        self.workers[worker.id] = worker
        info = models.ServerInfo(
            edition=models.ServerInfo.Edition.Standard,
            version="1.9.0",
            protocol=16,
            agent_protocol=1,
            region="local",
            node_id="lkserver-test",
        )
        # The first reply to a worker must be its registration.
        await worker.send(
            agent.ServerMessage(
                register=agent.RegisterWorkerResponse(worker_id=worker.id, server_info=info)
            )
        )
        self._registered.set()
        return worker

    async def _on_message(self, worker: Worker, message: agent.WorkerMessage) -> None:
        which = message.WhichOneof("message")
        if which == "availability":
            future = worker.pending.get(message.availability.job_id)
            if future is not None and not future.done():
                future.set_result(message.availability)
        elif which == "update_worker":
            update = message.update_worker
            worker.status = update.status
            worker.load = update.load
            worker.job_count = update.job_count
            if worker.status == agent.WorkerStatus.WS_AVAILABLE:
                self._registered.set()
        elif which == "update_job":
            record = self.jobs.get(message.update_job.job_id)
            if record is not None:
                record.set_status(message.update_job.status, message.update_job.error)
        elif which == "ping":
            pong = agent.WorkerPong(
                last_timestamp=message.ping.timestamp, timestamp=int(time.time() * 1000)
            )
            await worker.send(agent.ServerMessage(pong=pong))
        elif which == "migrate_job":
            for job_id in message.migrate_job.job_ids:
                if (record := self.jobs.get(job_id)) is not None:
                    record.worker_id = worker.id
        else:
            log.debug("ignoring worker message %s", which)

    def state(self) -> dict[str, Any]:
        return {
            "workers": [
                {
                    "id": w.id,
                    "agent_name": w.agent_name,
                    "version": w.version,
                    "status": agent.WorkerStatus.Name(w.status),  # type: ignore[arg-type]
                    "load": w.load,
                    "job_count": w.job_count,
                    "connected": w.connected,
                }
                for w in self.workers.values()
            ],
            "jobs": [
                {
                    "id": r.job.id,
                    "dispatch_id": r.job.dispatch_id,
                    "room": r.room.name,
                    "room_sid": r.room.sid,
                    "agent_name": r.job.agent_name,
                    "metadata": r.job.metadata,
                    "worker_id": r.worker_id,
                    "participant_identity": r.participant_identity,
                    "status": agent.JobStatus.Name(r.job.state.status),
                    "error": r.job.state.error,
                    "history": list(r.history),
                    "started_at_ms": r.job.state.started_at,
                    "ended_at_ms": r.job.state.ended_at,
                }
                for r in self.jobs.values()
            ],
        }
