"""One Bedrock bidirectional stream (one writer task, one reader task) and a shared client.

The SigV4 chunk chain breaks if two coroutines call `input_stream.send()` at once, so a
`Connection` owns exactly one writer task that drains an ordered queue; everything else
only enqueues. Audio frames stay raw PCM in that queue and are encoded by the writer, so a
frame that never left can be replayed into another stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
    InvokeModelWithBidirectionalStreamOutputChunk,
)
from awscrt.exceptions import AwsCrtError
from smithy_http.aio.crt import AWSCRTHTTPClient

from .config import NovaSettings
from .credentials import make_resolver
from .protocol import InputBuilder

log = logging.getLogger(__name__)

# The SDK's event-stream publisher and receiver log every event at DEBUG, formatting the
# whole event (the user's audio, the reply's audio) into the message: about 4 records per
# frame. Under a DEBUG root logger (livekit-agents `dev`, our `dev`) that adds a quarter to
# a session's CPU even with a null handler (measured at 10 sessions: 24 vs 19.5 ms per
# session-second) and floods the log with audio. They default to INFO here; a level set
# explicitly wins.
PER_EVENT_SDK_LOGGERS = ("smithy_aws_event_stream",)

PayloadHandler = Callable[["Connection", bytes], Awaitable[None]]
EndHandler = Callable[["Connection"], None]


class _Pcm:
    """A queued user audio frame (raw PCM16; encoded only when written)."""

    __slots__ = ("at", "data")

    def __init__(self, data: bytes, at: float) -> None:
        self.data = data
        self.at = at


_CLOSE = object()


class Connection:
    """One InvokeModelWithBidirectionalStream call.

    `ended` is set when the stream is over (the reader saw the end or an error, or the
    writer failed); `error` holds the exception, None for a plain end.
    """

    def __init__(
        self,
        *,
        client: AsyncBedrockRuntimeClient,
        model_id: str,
        label: str,
        on_payload: PayloadHandler,
        on_end: EndHandler,
        backlog_frames: int,
        coalesce_frames: int,
    ) -> None:
        self.builder = InputBuilder()
        self.label = label
        self._client = client
        self._model_id = model_id
        self._on_payload = on_payload
        self._on_end = on_end
        self._backlog_limit = backlog_frames
        self._coalesce = coalesce_frames
        self._items: deque[bytes | _Pcm | object] = deque()
        self._audio_backlog = 0
        self._wake = asyncio.Event()
        self._stream: Any = None
        self._output: Any = None
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended = asyncio.Event()
        self.error: BaseException | None = None
        self.closing = False  # we asked it to end: its end is not a failure
        self.audio_open = False
        self.opened_at = 0.0
        self.frames_sent = 0
        self.events_sent = 0
        self.payloads_received = 0

    def __repr__(self) -> str:
        return f"Connection({self.label}, prompt={self.builder.prompt_name[:8]})"

    @property
    def alive(self) -> bool:
        return not self.ended.is_set()

    # -- lifecycle

    async def open(self, preamble: Iterable[bytes], wait_s: float) -> None:
        """Start the call, queue `preamble`, and wait for the service's response headers."""
        self._items.extend(preamble)
        try:
            async with asyncio.timeout(wait_s):
                self._stream = await self._client.invoke_model_with_bidirectional_stream(
                    InvokeModelWithBidirectionalStreamOperationInput(model_id=self._model_id)
                )
                self._writer = asyncio.create_task(self._write_loop(), name=f"nova-w-{self.label}")
                self._reader = asyncio.create_task(self._read_loop(), name=f"nova-r-{self.label}")
                await asyncio.shield(self._ready)
        except BaseException:
            await self.abort()
            raise
        self.opened_at = time.monotonic()

    async def finish(self, final: Iterable[bytes], grace_s: float) -> None:
        """Queue the closing events, close the input, and wait for the service to end."""
        self.closing = True
        writer = self._writer
        if writer is not None and not writer.done() and self.error is None:
            # Even if the service already ended its side, finish ours: the closing events,
            # the signed empty frame and END_STREAM.
            self._items.extend(final)
            self._items.append(_CLOSE)
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await asyncio.wait([writer])
                    await self.ended.wait()
        await self.abort()

    async def abort(self) -> None:
        """Stop both tasks and release the stream (idempotent)."""
        self.closing = True
        self._mark_ended(None, notify=False)
        current = asyncio.current_task()
        tasks = [t for t in (self._writer, self._reader) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not self._ready.done():
            self._ready.cancel()
        stream, self._stream = self._stream, None
        if stream is not None:
            await _quietly(stream.input_stream.close(), 0.5)
            if self._output is not None:
                await _quietly(self._output.close(), 0.5)

    def _mark_ended(self, error: BaseException | None, *, notify: bool = True) -> None:
        if self.ended.is_set():
            return
        self.error = error
        self.ended.set()
        self._wake.set()
        if not self._ready.done():
            if error is not None:
                self._ready.set_exception(error)
                self._ready.exception()  # retrieved: open() may have given up already
            else:
                self._ready.set_exception(ConnectionError("stream ended before it opened"))
                self._ready.exception()
        if notify:
            self._on_end(self)

    # -- sending (never awaits: ordering is the queue's)

    def send(self, payload: bytes) -> None:
        self._items.append(payload)
        self._wake.set()

    def send_many(self, payloads: Iterable[bytes]) -> None:
        self._items.extend(payloads)
        self._wake.set()

    def send_audio(self, pcm: bytes, at: float, *, force: bool = False) -> bool:
        """Queue one frame; False (frame shed) when the backlog is full and not `force`."""
        if not force and self._audio_backlog >= self._backlog_limit:
            return False
        self._items.append(_Pcm(pcm, at))
        self._audio_backlog += 1
        self._wake.set()
        return True

    def unsent_audio(self) -> list[tuple[bytes, float]]:
        """Frames still queued (for replay elsewhere after this stream died)."""
        return [(i.data, i.at) for i in self._items if isinstance(i, _Pcm)]

    @property
    def backlog(self) -> int:
        return self._audio_backlog

    # -- tasks

    async def _write_loop(self) -> None:
        stream = self._stream
        send = stream.input_stream.send
        items = self._items
        try:
            while True:
                while not items:
                    if self._dead():
                        return
                    self._wake.clear()
                    await self._wake.wait()
                if self._dead():
                    return
                item = items.popleft()
                if item is _CLOSE:
                    await stream.input_stream.close()
                    return
                if isinstance(item, _Pcm):
                    self._audio_backlog -= 1
                    pcm = item.data
                    if self._coalesce > 1 and items and isinstance(items[0], _Pcm):
                        # The writer fell behind: one signed event for several frames.
                        parts = [pcm]
                        while len(parts) < self._coalesce and items and isinstance(items[0], _Pcm):
                            nxt = items.popleft()
                            assert isinstance(nxt, _Pcm)
                            parts.append(nxt.data)
                            self._audio_backlog -= 1
                        pcm = b"".join(parts)
                        self.frames_sent += len(parts) - 1
                    payload = self.builder.audio_input(pcm)
                    self.frames_sent += 1
                else:
                    assert isinstance(item, bytes)
                    payload = item
                await send(
                    InvokeModelWithBidirectionalStreamInputChunk(
                        value=BidirectionalInputPayloadPart(bytes_=payload)
                    )
                )
                self.events_sent += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # I/O errors are the stream dying; anything else is a bug worth seeing.
            level = logging.DEBUG if isinstance(exc, OSError | AwsCrtError) else logging.WARNING
            log.log(level, "nova %s: write failed: %r", self.label, exc)
            self._mark_ended(exc)

    def _dead(self) -> bool:
        """Nothing more to write: the stream failed, or it ended without us closing it.
        (After the service ends its side in reply to sessionEnd, ours still gets finished.)"""
        return self.ended.is_set() and (self.error is not None or not self.closing)

    async def _read_loop(self) -> None:
        try:
            _, output = await self._stream.await_output()
            self._output = output
            if not self._ready.done():
                self._ready.set_result(None)
            while True:
                chunk = await output.receive()
                if chunk is None:
                    break
                if isinstance(chunk, InvokeModelWithBidirectionalStreamOutputChunk):
                    data = chunk.value.bytes_
                    if data:
                        self.payloads_received += 1
                        await self._on_payload(self, data)
                else:
                    log.debug("nova %s: ignoring output member %s", self.label, type(chunk))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._mark_ended(exc)
            return
        self._mark_ended(None)


async def _quietly(awaitable: Awaitable[Any], limit_s: float) -> None:
    try:
        async with asyncio.timeout(limit_s):
            await awaitable
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("nova: ignoring error while closing a stream: %s", exc)


# ---------------------------------------------------------------------------- clients


class Transport(AWSCRTHTTPClient):
    """The CRT HTTP/2 client, closed gracefully.

    A stream's END_STREAM is written by a CRT task after the request body ends; closing the
    connection right after a session finished would drop it, so each stream gets a watcher
    (owned here) that completes with it, and close() first waits briefly for them. It also
    retrieves the outcome of CRT's per-stream body-writer task, which otherwise logs "Task
    exception was never retrieved" whenever the service ends a stream before we end ours.
    """

    CLOSE_WAIT_S = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._watchers: set[asyncio.Task[Any]] = set()

    async def _await_response(self, stream: Any) -> Any:
        watcher = asyncio.ensure_future(stream.wait_for_completion())
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watched)
        writer = getattr(stream, "_writer", None)
        if isinstance(writer, asyncio.Future):
            writer.add_done_callback(_retrieve)
        return await super()._await_response(stream)

    def _watched(self, watcher: asyncio.Task[Any]) -> None:
        self._watchers.discard(watcher)
        _retrieve(watcher)

    async def close(self) -> None:
        watchers = list(self._watchers)
        if watchers:
            _, pending = await asyncio.wait(watchers, timeout=self.CLOSE_WAIT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        await super().close()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("nova: CRT request-body task ended: %s", task.exception())


@dataclass(slots=True)
class _Shared:
    client: AsyncBedrockRuntimeClient
    users: int


def quiet_sdk_loggers() -> None:
    """Raise the SDK's per-event loggers to INFO unless someone set their level."""
    for name in PER_EVENT_SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


async def new_client(settings: NovaSettings) -> AsyncBedrockRuntimeClient:
    """A client for `settings`: CRT HTTP/2 transport, explicit endpoint and region."""
    quiet_sdk_loggers()
    transport = Transport()
    resolver = make_resolver(
        keys=settings.keys,
        region=settings.region,
        profile=settings.profile,
        http_client=transport,
    )
    config = await AsyncBedrockRuntimeConfig.resolve(
        profile=settings.profile,
        endpoint_uri=settings.endpoint,
        region=settings.region,
        transport=transport,
        aws_credentials_identity_resolver=resolver,
    )
    return AsyncBedrockRuntimeClient(config=config)


class ClientPool:
    """Sessions of one provider share a client per event loop: one HTTP/2 connection and
    one CRT I/O thread for all of them, instead of one each. Closed with its last user."""

    def __init__(self) -> None:
        self._clients: dict[int, _Shared] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def acquire(self, settings: NovaSettings) -> AsyncBedrockRuntimeClient:
        if not settings.share_client:
            return await new_client(settings)
        loop_id = id(asyncio.get_running_loop())
        lock = self._locks.setdefault(loop_id, asyncio.Lock())
        async with lock:
            shared = self._clients.get(loop_id)
            if shared is None:
                shared = _Shared(await new_client(settings), 0)
                self._clients[loop_id] = shared
            shared.users += 1
            return shared.client

    async def release(self, client: AsyncBedrockRuntimeClient) -> None:
        for key, shared in list(self._clients.items()):
            if shared.client is client:
                shared.users -= 1
                if shared.users > 0:
                    return
                del self._clients[key]
                self._locks.pop(key, None)
                break
        await _quietly(client.close(), 2.0)
