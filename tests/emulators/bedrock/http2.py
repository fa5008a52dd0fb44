"""A small HTTP/2 server connection over asyncio streams, built on the `h2` state machine.

Each request stream gets an `H2Stream`: body bytes come in through `receive()` and are
credited back to the peer (flow control) only when the consumer calls `ack()`, so a slow
consumer pushes back on the client exactly like a slow server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

log = logging.getLogger(__name__)

# Per-stream receive window; it bounds what a stream can have buffered but not consumed.
STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
READ_SIZE = 64 * 1024
# When the connection goes, handlers get this long to finish with what already arrived
# (sends fail at once) before they are cancelled.
HANDLER_GRACE_S = 1.0


class StreamClosedError(Exception):
    """The stream was reset (by either side) or its connection went away."""

    def __init__(self, reason: str, error_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_code = error_code


class H2Stream:
    def __init__(
        self, conn: H2ServerConnection, stream_id: int, headers: list[tuple[str, str]]
    ) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.header_list = headers
        self.headers: dict[str, str] = {}
        for name, value in headers:
            self.headers[name] = value
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._data_ready = asyncio.Event()
        self._window_open = asyncio.Event()
        self.remote_ended = False
        self.local_ended = False
        self.closed: StreamClosedError | None = None

    @property
    def method(self) -> str:
        return self.headers.get(":method", "")

    @property
    def path(self) -> str:
        return self.headers.get(":path", "")

    # --- receiving -------------------------------------------------------------------

    def _on_data(self, data: bytes, flow_len: int) -> None:
        # Padding counts against flow control but is never seen by the consumer: credit it now.
        padding = flow_len - len(data)
        if padding:
            self._conn.ack(self.stream_id, padding)
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
        self._data_ready.set()

    def _on_end(self) -> None:
        self.remote_ended = True
        self._data_ready.set()

    def _on_closed(self, error: StreamClosedError) -> None:
        if self.closed is None:
            self.closed = error
        self._data_ready.set()
        self._window_open.set()

    async def receive(self) -> bytes | None:
        """The next body chunk; None once the client has ended its side.

        What arrived is delivered first, and END_STREAM wins over a later reset or lost
        connection: a client that ended its side and then dropped the connection did
        everything right, and its request body is complete.
        """
        while not self._chunks:
            if self.remote_ended:
                return None
            if self.closed is not None:
                raise self.closed
            self._data_ready.clear()
            await self._data_ready.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        return chunk

    def ack(self, size: int) -> None:
        """Give `size` consumed bytes back to the peer's send window."""
        if self.closed is None and size > 0:
            self._conn.ack(self.stream_id, size)

    # --- sending ---------------------------------------------------------------------

    def _on_window(self) -> None:
        self._window_open.set()

    async def send_headers(
        self, status: int, headers: list[tuple[str, str]], *, end_stream: bool = False
    ) -> None:
        if self.closed is not None:
            raise self.closed
        self._conn.send_headers(self.stream_id, [(":status", str(status)), *headers], end_stream)
        self.local_ended = end_stream
        await self._conn.drain()

    async def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        view = memoryview(data)
        while True:
            if self.closed is not None:
                raise self.closed
            if not view:
                break
            window = self._conn.send_window(self.stream_id)
            if window <= 0:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            size = min(window, self._conn.max_frame_size, len(view))
            last = end_stream and size == len(view)
            self._conn.send_data(self.stream_id, bytes(view[:size]), last)
            view = view[size:]
            if last:
                self.local_ended = True
        if end_stream and not self.local_ended:
            self._conn.end_stream(self.stream_id)
            self.local_ended = True
        await self._conn.drain()

    async def end(self) -> None:
        if not self.local_ended and self.closed is None:
            await self.send_data(b"", end_stream=True)

    def reset(self, error_code: int = h2.errors.ErrorCodes.NO_ERROR) -> None:
        if self.closed is None:
            self._conn.reset_stream(self.stream_id, error_code)
            self._on_closed(StreamClosedError("reset by server", int(error_code)))


StreamHandler = Callable[[H2Stream, int], Awaitable[None]]


class H2ServerConnection:
    """One TLS connection; runs until the peer goes away or `close()` is called."""

    _next_id = 0

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: StreamHandler,
        *,
        quick_ack: bool = False,
    ) -> None:
        H2ServerConnection._next_id += 1
        self.id = H2ServerConnection._next_id
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._streams: dict[int, H2Stream] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._closing = False
        self._quick_ack = quick_ack and hasattr(socket, "TCP_QUICKACK")

    def _ack_now(self) -> None:
        # Linux clears TCP_QUICKACK after each ACK, so it is re-armed after every read.
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    # --- primitives used by H2Stream ------------------------------------------------

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        self._flush()
        if self._writer.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    def ack(self, stream_id: int, size: int) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._h2.acknowledge_received_data(size, stream_id)
            self._flush()

    def send_window(self, stream_id: int) -> int:
        try:
            return self._h2.local_flow_control_window(stream_id)
        except h2.exceptions.StreamClosedError as exc:
            raise StreamClosedError("stream closed") from exc

    @property
    def max_frame_size(self) -> int:
        return self._h2.max_outbound_frame_size

    def send_headers(self, stream_id: int, headers: list[tuple[str, str]], end: bool) -> None:
        self._h2.send_headers(stream_id, headers, end_stream=end)
        self._flush()

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        self._h2.send_data(stream_id, data, end_stream=end)
        self._flush()

    def end_stream(self, stream_id: int) -> None:
        self._h2.end_stream(stream_id)
        self._flush()

    def reset_stream(self, stream_id: int, code: int) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, error_code=code)
            self._flush()

    # --- the connection loop ----------------------------------------------------------

    async def run(self) -> None:
        settings = {
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 128,
        }
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        await self.drain()
        try:
            while not self._closing:
                try:
                    data = await self._reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                if self._quick_ack:
                    self._ack_now()
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.warning("HTTP/2 protocol error from client: %s", exc)
                    self._flush()
                    break
                for event in events:
                    self._dispatch(event)
                await self.drain()
        finally:
            await self._shutdown()

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            headers = [(bytes(n).decode(), bytes(v).decode()) for n, v in event.headers or []]
            new_stream = H2Stream(self, sid, headers)
            self._streams[sid] = new_stream
            self._tasks[sid] = asyncio.create_task(
                self._run_stream(new_stream), name=f"h2-stream-{self.id}-{sid}"
            )
        elif isinstance(event, h2.events.DataReceived):
            flow = event.flow_controlled_length or 0
            stream = self._streams.get(event.stream_id or 0)
            if stream is not None:
                stream._on_data(event.data or b"", flow)
            elif flow:
                self.ack(event.stream_id or 0, flow)
        elif isinstance(event, h2.events.StreamEnded):
            if (stream := self._streams.get(event.stream_id or 0)) is not None:
                stream._on_end()
        elif isinstance(event, h2.events.StreamReset):
            if (stream := self._streams.get(event.stream_id or 0)) is not None:
                code = int(event.error_code or 0)
                stream._on_closed(StreamClosedError("reset by client", code))
        elif isinstance(event, h2.events.WindowUpdated):
            if not event.stream_id:
                for each in self._streams.values():
                    each._on_window()
            elif (stream := self._streams.get(event.stream_id)) is not None:
                stream._on_window()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for each in self._streams.values():
                each._on_window()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._closing = True

    async def _run_stream(self, stream: H2Stream) -> None:
        try:
            await self._handler(stream, self.id)
        except StreamClosedError:
            pass
        except Exception:
            log.exception("stream handler failed")
            stream.reset(h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            self._streams.pop(stream.stream_id, None)
            self._tasks.pop(stream.stream_id, None)

    async def _shutdown(self) -> None:
        lost = StreamClosedError("connection lost")
        for stream in list(self._streams.values()):
            stream._on_closed(lost)
        tasks = list(self._tasks.values())
        try:
            # Not cancelled at once: a client may send its whole close sequence and
            # END_STREAM and drop the connection in the same breath; the handler still
            # has to read and record that (a handler that had not even started yet too).
            if tasks:
                await asyncio.wait(tasks, timeout=HANDLER_GRACE_S)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
        with contextlib.suppress(Exception):
            self._h2.close_connection()
            self._flush()
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    def close(self) -> None:
        """Ask the loop to stop (it notices on the next read or at once via transport abort)."""
        self._closing = True
        transport = self._writer.transport
        if not transport.is_closing():
            with contextlib.suppress(Exception):
                self._h2.close_connection()
                self._flush()
            transport.close()
