"""`BedrockEmulator`: a local Bedrock Runtime endpoint for InvokeModelWithBidirectionalStream.

A real server: TLS with ALPN h2 on an ephemeral port, SigV4-checked requests, event-stream
frames, Nova Sonic protocol rules and a scripted model (see session.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import unquote

import h2.errors

from ..tls import LocalCA, make_local_ca
from .http2 import H2ServerConnection, H2Stream, StreamClosedError
from .records import StreamRecord
from .scenario import NOVA_2_SONIC, NOVA_SONIC_V1, Faults, Scenario
from .session import EmulatorState, NovaSession
from .sigv4 import Credentials, SignatureError, verify_request

ACCESS_KEY = "AKIAEMULATOR0000TEST"
SECRET_KEY = "emulator/secret/key/for/tests/only/0000000"
SESSION_TOKEN = "emulator-session-token"
REGION = "us-east-1"

_PATH_RE = re.compile(r"^/model/(?P<model>[^/?]+)/invoke-with-bidirectional-stream(?:\?.*)?$")
_ERROR_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_INVALID_MODEL = "The provided model identifier is invalid."
# Inference-profile prefixes: a known base model behind a profile this region does not serve
# is "not found" rather than "invalid".
_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "ca.", "jp.", "au.")
_SIGNATURE_STATUS = {
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 400,
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
}


class BedrockEmulator:
    """Async context manager; see the package docstring for the API."""

    def __init__(
        self,
        *,
        scenario: Scenario | None = None,
        faults: Faults | None = None,
        tls: LocalCA | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        session_token: str | None = None,
        region: str = REGION,
        shutdown_grace_s: float = 1.0,
        keep_audio: bool = True,
        quick_ack: bool = False,
    ) -> None:
        self.scenario = scenario or Scenario()
        self.faults = faults or Faults()
        self._tls = tls
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._host = host
        self._port = port
        self._state = EmulatorState(
            self.scenario,
            self.faults,
            Credentials(access_key, secret_key, session_token),
            region,
            keep_audio=keep_audio,
        )
        self._server: asyncio.Server | None = None
        self._connections: dict[H2ServerConnection, asyncio.Task[None]] = {}
        self._next_stream_id = 0
        # On stop, streams still open get this long to finish before connections are cut
        # (cutting a CRT client mid-write makes it log an unretrieved task exception).
        self._shutdown_grace_s = shutdown_grace_s
        # The CRT client leaves Nagle on, so back-to-back small events wait for the server's
        # delayed ACK (~40 ms on Linux). Off by default (a normal TCP stack, like the real
        # endpoint); True ACKs every read at once.
        self._quick_ack = quick_ack

    # --- public API ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self.port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def ca(self) -> LocalCA:
        if self._tls is None:
            raise RuntimeError("emulator not started")
        return self._tls

    @property
    def ca_file(self) -> Path:
        return self.ca.ca_file

    @property
    def region(self) -> str:
        return self._state.region

    @property
    def streams(self) -> list[StreamRecord]:
        """Every request received, in arrival order (rejected ones too: see http_status)."""
        return self._state.streams

    @property
    def accepted_streams(self) -> list[StreamRecord]:
        return [s for s in self._state.streams if s.http_status == 200]

    @property
    def signature_failures(self) -> int:
        """Refused Authorization headers plus bad chunk signatures, across all streams."""
        return self._state.signature_failures

    @property
    def faults_fired(self) -> list[tuple[str, int]]:
        """(fault name, turn number) for each injected turn fault, in order."""
        return self._state.faults_fired

    @property
    def turns_started(self) -> int:
        return self._state.turns_started

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - the API other test packages use
    ) -> None:
        """Wait until `predicate()` holds (re-checked on every change); TimeoutError if not."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s: {predicate!r}")
            await self._state.changed(min(remaining, 0.05))

    async def start(self) -> None:
        if self._tls is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="bedrock-emulator-")
            hosts = list(dict.fromkeys([self._host, "127.0.0.1", "localhost"]))
            self._tls = make_local_ca(Path(self._tmpdir.name), hosts)
        self._server = await asyncio.start_server(
            self._on_connection, self._host, self._port, ssl=self._tls.server_context()
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(TimeoutError):
            await self.wait_for(
                lambda: all(s.finished for s in self.streams), self._shutdown_grace_s
            )
        for conn in list(self._connections):
            conn.close()
        tasks = list(self._connections.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            self._server = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- connections and requests ----------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            writer.close()  # the service speaks HTTP/2 only
            return
        conn = H2ServerConnection(reader, writer, self._on_request, quick_ack=self._quick_ack)
        task = asyncio.current_task()
        assert task is not None
        self._connections[conn] = task
        try:
            await conn.run()
        finally:
            self._connections.pop(conn, None)

    async def _on_request(self, stream: H2Stream, connection_id: int) -> None:
        self._next_stream_id += 1
        record = StreamRecord(
            id=self._next_stream_id,
            connection_id=connection_id,
            path=stream.path,
            model_id="",
            started_at=time.monotonic(),
        )
        self._state.streams.append(record)
        self._state.notify()
        try:
            seed = await self._admit(stream, record)
            if seed is None:
                return
            await NovaSession(
                state=self._state, record=record, stream=stream, seed_signature=seed
            ).run()
        finally:
            if record.ended_at is None:
                record.ended_at = time.monotonic()
            self._state.notify()

    async def _admit(self, stream: H2Stream, record: StreamRecord) -> str | None:
        """HTTP-level checks; answers errors like the service. Returns the seed signature."""
        match = _PATH_RE.match(stream.path)
        if stream.method != "POST" or match is None:
            await self._http_error(stream, record, 404, "UnknownOperationException", None)
            return None
        model_id = unquote(match["model"])
        record.model_id = model_id
        try:
            auth = verify_request(
                method=stream.method,
                path=stream.path,
                headers=stream.headers,
                credentials=self._state.credentials,
                region=self._state.region,
                service="bedrock",
            )
        except SignatureError as exc:
            record.signature_failures += 1
            record.signature_failure_reasons.append(exc.message)
            self._state.signature_failures += 1
            status = _SIGNATURE_STATUS.get(exc.error_type, 403)
            await self._http_error(stream, record, status, exc.error_type, exc.message)
            return None
        if stream.headers.get("x-amz-content-sha256") != "STREAMING-AWS4-HMAC-SHA256-EVENTS":
            await self._http_error(
                stream,
                record,
                400,
                "ValidationException",
                "Bidirectional streams must be signed with STREAMING-AWS4-HMAC-SHA256-EVENTS.",
            )
            return None
        if stream.headers.get("content-type") != "application/vnd.amazon.eventstream":
            await self._http_error(
                stream,
                record,
                400,
                "ValidationException",
                "Content-Type must be application/vnd.amazon.eventstream.",
            )
            return None
        if model_id not in self.scenario.voices:
            base = model_id
            for prefix in _PROFILE_PREFIXES:
                base = base.removeprefix(prefix)
            if base != model_id and base in (NOVA_SONIC_V1, NOVA_2_SONIC):
                await self._http_error(
                    stream, record, 404, "ResourceNotFoundException", "Model not found."
                )
            else:
                await self._http_error(stream, record, 400, "ValidationException", _INVALID_MODEL)
            return None
        self._state.requests_seen += 1
        if self._state.requests_seen <= self.faults.throttle_first:
            await self._http_error(
                stream,
                record,
                self.faults.throttle_status,
                self.faults.throttle_error_type,
                self.faults.throttle_message,
            )
            return None
        record.http_status = 200
        await stream.send_headers(
            200,
            [
                ("content-type", "application/vnd.amazon.eventstream"),
                ("x-amzn-requestid", str(uuid.uuid4())),
            ],
        )
        return auth.signature

    async def _http_error(
        self,
        stream: H2Stream,
        record: StreamRecord,
        status: int,
        error_type: str,
        message: str | None,
    ) -> None:
        record.http_status = status
        record.http_error_type = error_type
        body = json.dumps({"message": message}).encode() if message is not None else b"{}"
        try:
            await stream.send_headers(
                status,
                [
                    ("content-type", "application/json"),
                    ("x-amzn-errortype", error_type + _ERROR_SUFFIX),
                    ("x-amzn-requestid", str(uuid.uuid4())),
                    ("content-length", str(len(body))),
                ],
            )
            await stream.send_data(body, end_stream=True)
        except StreamClosedError:
            return
        # The body is not wanted. Let the client finish its side (a CRT client closing its
        # input after an immediate reset logs an unretrieved task error); reset if it lingers.
        try:
            async with asyncio.timeout(self.scenario.close_grace_s):
                while (chunk := await stream.receive()) is not None:
                    stream.ack(len(chunk))
        except TimeoutError:
            record.notes.append("client did not finish its side in time; RST_STREAM NO_ERROR")
            stream.reset(h2.errors.ErrorCodes.NO_ERROR)
        except StreamClosedError:
            pass
