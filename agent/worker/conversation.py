"""One conversation in a room: find the participant, start the provider session, publish
the agent's voice, wire the microphone into the bridge, publish transcripts and state, and
end on leave (after a grace period), room disconnect, drain or session end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from livekit import rtc

from agent import s2s
from agent.audio import LiveKitSink
from agent.bridge import AgentState, Bridge
from agent.s2s import ConversationContext, EventType, Hooks, S2SError, Session, SessionEvent
from agent.tools import ToolRegistry

from .metadata import JobOptions
from .metered import MeteredSession
from .participant import Peer, choose_participant
from .room import RoomPort
from .settings import Settings
from .state import StatePublisher
from .transcripts import AgentTranscript, UserTranscripts

log = logging.getLogger(__name__)

TICK_S = 0.1  # transcript release cadence
MIC_QUEUE_FRAMES = 100  # ~2 s of 20 ms frames; the oldest are dropped beyond that
EVENT_QUEUE = 256

StartSession = Callable[[JobOptions, ToolRegistry, ConversationContext], Awaitable[Session]]


async def start_provider_session(
    options: JobOptions, tools: ToolRegistry, context: ConversationContext
) -> Session:
    """Create the provider named in `options` and connect a session."""
    model = s2s.new(
        options.provider,
        s2s.Config(
            model=options.model,
            voice=options.voice,
            instructions=options.instructions,
            tools=tools.definitions(),
            language=options.language,
            latency_target=options.latency_target,
            extra=dict(options.provider_options),
        ),
    )
    return await model.start(context=context)


@dataclass(frozen=True, slots=True)
class _Interrupted:
    turn_id: str | None
    heard_ms: float


@dataclass(frozen=True, slots=True)
class _TurnEnded:
    turn_id: str | None


_Item = SessionEvent | _Interrupted | _TurnEnded


class Conversation:
    def __init__(
        self,
        room: RoomPort,
        options: JobOptions,
        settings: Settings,
        *,
        tools: ToolRegistry,
        job_id: str,
        drained: Callable[[], Awaitable[None]],
        start_session: StartSession = start_provider_session,
    ) -> None:
        self._room = room
        self._options = options
        self._settings = settings
        self._tools = tools
        self._job_id = job_id
        self._drained = drained
        self._start_session = start_session
        self._state = StatePublisher(room.set_attributes)
        self._user_tx = UserTranscripts(room.streams)
        self._agent_tx: AgentTranscript | None = None
        self._items: asyncio.Queue[_Item] = asyncio.Queue(EVENT_QUEUE)
        self._listening = asyncio.Event()
        self._bridge: Bridge | None = None
        self._session: Session | None = None
        self._metered: MeteredSession | None = None
        self._speaker_source: rtc.AudioSource | None = None
        self._mic_sid: str | None = None
        self._mic_stream: rtc.AudioStream | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._close_started = False
        self._close_done = asyncio.Event()
        self.participant: str | None = None
        self.end_reason: str | None = None

    @property
    def bridge(self) -> Bridge | None:
        return self._bridge

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> str:
        """Talk until the conversation ends; returns why it ended. Always cleans up."""
        self._state.set("initializing")
        self._spawn(self._state.run(), "state")
        try:
            self.end_reason = await self._run()
        finally:
            await self.close()
        log.info("conversation in room %r ended: %s", self._room.name, self.end_reason)
        return self.end_reason

    async def close(self, *, finish_turn: bool = False) -> None:
        """Stop everything. With `finish_turn`, let a reply in progress finish first (bounded
        by the drain turn timeout). Idempotent; also the job's shutdown callback."""
        if self._close_started:
            await self._close_done.wait()
            return
        self._close_started = True
        try:
            await self._close(finish_turn=finish_turn)
        finally:
            self._close_done.set()

    async def _close(self, *, finish_turn: bool) -> None:
        if finish_turn:
            await self._finish_turn()
        if self._bridge is not None:
            await self._bridge.close()
        elif self._session is not None:
            await self._session.close()
        await self._close_mic()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # The bridge has stopped: publish what it reported last, then the final state.
        await self._drain_items()
        if self._agent_tx is not None:
            await self._agent_tx.finish(interrupted=True)
        await self._state.flush()
        if self._speaker_source is not None:
            await self._speaker_source.aclose()
            self._speaker_source = None

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(f"conversation-{name}")
        self._tasks.append(task)
        return task

    async def _run(self) -> str:
        peer = await self._wait_for_participant()
        if isinstance(peer, str):
            return peer
        self.participant = peer.identity
        log.info(
            "talking to %r in room %r (provider %s%s)",
            peer.identity,
            self._room.name,
            self._options.provider,
            f", voice {self._options.voice}" if self._options.voice else "",
        )
        context = ConversationContext(
            session_id=self._job_id, conversation_id=self._room.name, user_id=peer.identity
        )
        try:
            session = await self._start_session(self._options, self._tools, context)
        except (S2SError, LookupError, OSError) as exc:
            log.error("could not start the %s session: %s", self._options.provider, exc)
            return f"provider session failed: {exc}"
        self._session = session
        speaker = await self._room.publish_audio(
            sample_rate=session.output_format.sample_rate,
            queue_ms=self._settings.output_queue_ms,
        )
        self._speaker_source = speaker.source
        metered = MeteredSession(session)
        self._metered = metered
        agent_tx = AgentTranscript(
            self._room.streams, identity=self._room.local_identity, progress=self._progress
        )
        agent_tx.track_sid = speaker.sid
        self._agent_tx = agent_tx
        self._user_tx.participant_identity = peer.identity
        bridge = Bridge(
            metered,
            LiveKitSink(speaker.source),
            tools=self._tools,
            hooks=Hooks(on_turn=self._on_turn, on_interrupt=self._on_interrupt),
            on_transcript=self._on_transcript,
            on_state=self._on_state,
            context=context,
            provider=self._options.provider,
            model=self._options.model or "",
            tool_timeout_s=self._settings.tool_timeout_s,
        )
        self._bridge = bridge
        bridge_task = self._spawn(bridge.run(), "bridge")
        self._spawn(self._publish_transcripts(), "transcripts")
        await self._attach_mic()
        if self._options.greeting:
            await self._greet(session, self._options.greeting)
        return await self._supervise(bridge_task)

    # -- participant ---------------------------------------------------------------------

    async def _wait_for_participant(self) -> Peer | str:
        """The participant to talk to, or the reason there will be none."""
        wanted = self._options.participant_identity
        drained = self._spawn(self._drained(), "drain-wait")
        try:
            while True:
                if not self._room.connected:
                    return "room disconnected"
                peer = choose_participant(self._room.peers(), wanted)
                if peer is not None:
                    return peer
                changed = asyncio.ensure_future(self._room.changed())
                await asyncio.wait({changed, drained}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if drained.done():
                    return "worker draining"
        finally:
            drained.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drained

    async def _supervise(self, bridge_task: asyncio.Task[None]) -> str:
        target = self.participant
        grace_until: float | None = None
        drained = self._spawn(self._drained(), "drain")
        while True:
            timeout = None if grace_until is None else max(0.0, grace_until - time.monotonic())
            changed = asyncio.ensure_future(self._room.changed())
            done, _ = await asyncio.wait(
                {bridge_task, drained, changed},
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            changed.cancel()
            if bridge_task in done:
                exc = bridge_task.exception()
                if exc is not None:
                    log.error("the bridge failed: %r", exc)
                    return f"bridge failed: {exc!r}"
                return "session ended"
            if drained in done:
                log.info("worker draining: finishing the current turn, then leaving")
                await self._finish_turn()
                return "worker draining"
            if not self._room.connected:
                return "room disconnected"
            present = any(p.identity == target for p in self._room.peers())
            if present:
                if grace_until is not None:
                    log.info("participant %r rejoined; resuming", target)
                    grace_until = None
                await self._attach_mic()
                continue
            if grace_until is None:
                grace = self._settings.participant_grace_s
                log.info("participant %r left; ending in %g s unless they rejoin", target, grace)
                await self._detach_mic()
                grace_until = time.monotonic() + grace
            if time.monotonic() >= grace_until:
                return "participant left"

    # -- microphone ----------------------------------------------------------------------

    async def _attach_mic(self) -> None:
        """Feed the participant's microphone to the bridge (again, after a rejoin or a
        republished track); detach if it went away."""
        assert self._bridge is not None and self._session is not None
        if self.participant is None:
            return
        mic = self._room.microphone(self.participant)
        if mic is None:
            if self._mic_sid is not None:
                await self._detach_mic()
            return
        if mic.sid == self._mic_sid:
            return
        fmt = self._session.input_format
        stream = rtc.AudioStream.from_track(
            track=mic.track,
            sample_rate=fmt.sample_rate,
            num_channels=1,
            frame_size_ms=fmt.frame_ms,
            capacity=MIC_QUEUE_FRAMES,
        )
        await self._bridge.set_source(_frames(stream))
        await self._close_mic()
        self._mic_stream, self._mic_sid = stream, mic.sid
        self._user_tx.track_sid = mic.sid
        log.info("listening to %r (track %s)", self.participant, mic.sid)

    async def _detach_mic(self) -> None:
        if self._bridge is not None:
            await self._bridge.set_source(None)
        await self._close_mic()

    async def _close_mic(self) -> None:
        stream, self._mic_stream, self._mic_sid = self._mic_stream, None, None
        if stream is not None:
            await stream.aclose()

    # -- greeting and drain --------------------------------------------------------------

    async def _greet(self, session: Session, greeting: str) -> None:
        try:
            await session.send_text(greeting)
        except (NotImplementedError, S2SError) as exc:
            log.warning(
                "provider %s can't take text input (%s); greeting skipped",
                self._options.provider,
                exc,
            )

    async def _finish_turn(self) -> None:
        """Until the agent is back to listening (its reply played), bounded."""
        bridge = self._bridge
        if bridge is None or bridge.state in ("listening", "initializing"):
            return
        timeout = self._settings.drain_turn_timeout_s
        try:
            await asyncio.wait_for(self._listening.wait(), timeout)
        except TimeoutError:
            log.warning("the current turn did not finish within %g s; closing anyway", timeout)

    # -- bridge callbacks ----------------------------------------------------------------

    def _on_state(self, state: AgentState) -> None:
        self._state.set(state)
        if state == "listening":
            self._listening.set()
        else:
            self._listening.clear()

    def _enqueue(self, item: _Item) -> None:
        try:
            self._items.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("transcript queue full; dropping %r", item)

    def _on_transcript(self, event: SessionEvent) -> None:
        if event.text:
            self._enqueue(event)

    def _on_turn(self, event: SessionEvent) -> None:
        self._enqueue(_TurnEnded(event.turn_id))

    def _on_interrupt(self, event: SessionEvent) -> None:
        # heard_ms is per turn: hooks run a moment after the event, when the bridge may
        # already be playing the next reply.
        bridge = self._bridge
        heard = (bridge.heard_ms(event.turn_id) or 0.0) if bridge is not None else 0.0
        self._enqueue(_Interrupted(event.turn_id, heard))

    # -- transcripts ---------------------------------------------------------------------

    def _progress(self, turn_id: str | None) -> tuple[float, float]:
        """(played, received) milliseconds of the reply `turn_id`."""
        bridge, metered = self._bridge, self._metered
        if bridge is None or metered is None:
            return 0.0, 0.0
        played = bridge.heard_ms(turn_id) or 0.0
        return played, metered.received_ms(turn_id)

    async def _publish_transcripts(self) -> None:
        agent_tx = self._agent_tx
        assert agent_tx is not None
        while True:
            item: _Item | None = None
            try:
                if agent_tx.active:
                    item = await asyncio.wait_for(self._items.get(), TICK_S)
                else:
                    item = await self._items.get()
            except TimeoutError:
                pass
            if item is not None:
                await self._handle(item)
            if agent_tx.active and agent_tx.text_done and self._listening.is_set():
                # Complete and back to listening: it played out (or had no audio at all).
                await agent_tx.finish(interrupted=False)
            await agent_tx.tick()

    async def _drain_items(self) -> None:
        while not self._items.empty():
            await self._handle(self._items.get_nowait())

    async def _handle(self, item: _Item) -> None:
        agent_tx = self._agent_tx
        if isinstance(item, _Interrupted):
            if agent_tx is not None:
                await agent_tx.interrupted(item.turn_id, item.heard_ms)
        elif isinstance(item, _TurnEnded):
            if agent_tx is not None:
                agent_tx.turn_ended(item.turn_id)
        elif item.type is EventType.TRANSCRIPT:
            await self._user_tx.on_text(item.text or "", final=item.final, turn_id=item.turn_id)
        elif item.type is EventType.TEXT_OUTPUT and agent_tx is not None:
            await agent_tx.on_text(item.text or "", final=item.final, turn_id=item.turn_id)


async def _frames(stream: rtc.AudioStream) -> AsyncIterator[rtc.AudioFrame]:
    async for event in stream:
        yield event.frame
