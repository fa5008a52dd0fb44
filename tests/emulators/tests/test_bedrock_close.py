"""A client that ends its side properly and drops the connection at once still counts as a
clean close: the emulator must finish reading what arrived before the connection went.

The real SDK cannot be made to close its connection at a chosen instant, so this test
speaks HTTP/2 itself (the `h2` client state machine over TLS) and signs like the SDK.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import time
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from tests.emulators.bedrock import (
    ACCESS_KEY,
    NOVA_2_SONIC,
    REGION,
    SECRET_KEY,
    Faults,
    Scenario,
    Turn,
)
from tests.emulators.bedrock.eventstream import Header, encode_message
from tests.emulators.bedrock.fixtures import BedrockEmulatorFactory
from tests.emulators.bedrock.sigv4 import STREAMING_PAYLOAD, canonical_uri, signing_key
from tests.emulators.tls import LocalCA

from .nova_client import audio_input, audio_start, closing, opening, silence, text_block

pytestmark = pytest.mark.timeout(30)

NO_TIMERS = Faults(idle_timeout_s=None, connection_limit_s=None)
SERVICE = "bedrock"
STREAM_ID = 1
DEFAULT_WINDOW = 65535  # the h2 client's initial stream window (never acknowledged here)


class RawSigner:
    """SigV4 for the request and the `:chunk-signature` chain, as the SDK does it."""

    def __init__(self, host: str, path: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        self.day = self.amz_date[:8]
        self.scope = f"{self.day}/{REGION}/{SERVICE}/aws4_request"
        self.key = signing_key(SECRET_KEY, self.day, REGION, SERVICE)
        headers = {
            "content-type": "application/vnd.amazon.eventstream",
            "host": host,
            "x-amz-content-sha256": STREAMING_PAYLOAD,
            "x-amz-date": self.amz_date,
        }
        signed = ";".join(headers)
        canonical = "\n".join(
            [
                "POST",
                canonical_uri(path),
                "",
                "".join(f"{k}:{v}\n" for k, v in headers.items()),
                signed,
                STREAMING_PAYLOAD,
            ]
        )
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                self.amz_date,
                self.scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        self.previous = hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()
        self.headers = [(k, v) for k, v in headers.items() if k != "host"]
        self.authorization = (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{self.scope}, "
            f"SignedHeaders={signed}, Signature={self.previous}"
        )

    def outer(self, payload: bytes) -> bytes:
        date_ms = int(time.time()) * 1000
        date = Header.timestamp_ms(":date", date_ms)
        stamp = datetime.datetime.fromtimestamp(date_ms / 1000, datetime.UTC)
        day = stamp.strftime("%Y%m%d")
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                stamp.strftime("%Y%m%dT%H%M%SZ"),
                f"{day}/{REGION}/{SERVICE}/aws4_request",
                self.previous,
                hashlib.sha256(date.encode()).hexdigest(),
                hashlib.sha256(payload).hexdigest(),
            ]
        )
        key = signing_key(SECRET_KEY, day, REGION, SERVICE)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256)
        self.previous = signature.hexdigest()
        return encode_message(
            (date, Header.bytes_(":chunk-signature", signature.digest())), payload
        )

    def event(self, event: dict[str, Any]) -> bytes:
        wrapper = {"bytes": base64.b64encode(json.dumps(event).encode()).decode()}
        inner = encode_message(
            (
                Header.string(":message-type", "event"),
                Header.string(":event-type", "chunk"),
                Header.string(":content-type", "application/json"),
            ),
            json.dumps(wrapper).encode(),
        )
        return self.outer(inner)


class RawBidi:
    """One request stream on its own TLS connection, driven frame by frame. Received
    DATA is never acknowledged, so the emulator's sends stop at the initial window."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.events: list[dict[str, Any]] = []  # every event sent, in order
        self.received_data = 0
        self.signer: RawSigner | None = None

    @classmethod
    async def open(cls, port: int, ca: LocalCA) -> RawBidi:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ca.client_context(), server_hostname="127.0.0.1"
        )
        return cls(reader, writer)

    async def request(self, model_id: str = NOVA_2_SONIC) -> int:
        """Send the signed request headers; return the response status."""
        self.conn.initiate_connection()
        authority = f"127.0.0.1:{self.writer.get_extra_info('peername')[1]}"
        path = f"/model/{model_id.replace(':', '%3A')}/invoke-with-bidirectional-stream"
        self.signer = RawSigner(authority, path)
        self.conn.send_headers(
            STREAM_ID,
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", authority),
                (":path", path),
                *self.signer.headers,
                ("authorization", self.signer.authorization),
            ],
        )
        self.writer.write(self.conn.data_to_send())
        while True:
            for event in await self._read():
                if isinstance(event, h2.events.ResponseReceived):
                    return int(dict(event.headers or [])[b":status"])

    async def _read(self, timeout: float | None = None) -> list[h2.events.Event]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            data = await self.reader.read(65536)
        assert data, "the emulator closed the connection"
        events = self.conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.received_data += event.flow_controlled_length or 0
        self.writer.write(self.conn.data_to_send())
        return events

    async def read_until_quiet(self, quiet_s: float = 0.3) -> None:
        """Take in what the emulator sends until it has sent nothing for `quiet_s`."""
        with contextlib.suppress(TimeoutError):
            while True:
                await self._read(timeout=quiet_s)

    def send(self, *events: dict[str, Any], end: bool = False) -> None:
        """Queue signed events (and, with `end`, the empty frame and END_STREAM)."""
        assert self.signer is not None
        frames = [self.signer.event(e) for e in events]
        if end:
            frames.append(self.signer.outer(b""))
        assert sum(map(len, frames)) < self.conn.local_flow_control_window(STREAM_ID)
        for frame in frames:
            self.conn.send_data(STREAM_ID, frame)
        if end:
            self.conn.end_stream(STREAM_ID)
        self.events.extend(events)
        self.writer.write(self.conn.data_to_send())

    async def drop(self, *, reset_first: bool = False) -> None:
        """Close the connection now (after what was written, with no further reading);
        with `reset_first`, RST_STREAM CANCEL goes out just before."""
        if reset_first:
            self.conn.reset_stream(STREAM_ID, h2.errors.ErrorCodes.CANCEL)
            self.writer.write(self.conn.data_to_send())
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@pytest.mark.parametrize(
    ("audio_frames", "reset_first"),
    [(0, False), (20, False), (20, True)],
    ids=["no-audio", "audio", "audio-then-reset"],
)
async def test_end_stream_then_immediate_disconnect_is_clean(
    bedrock_emulator: BedrockEmulatorFactory,
    test_ca: LocalCA,
    audio_frames: int,
    reset_first: bool,
) -> None:
    emu = await bedrock_emulator(faults=NO_TIMERS)
    bidi = await RawBidi.open(emu.port, test_ca)
    try:
        # After the 200 the session is running and waiting for input.
        assert await bidi.request() == 200
        # The whole close sequence, END_STREAM included, in one write; then the
        # connection goes at once.
        silent = (audio_input(silence(32)) for _ in range(audio_frames))
        bidi.send(*opening(), audio_start(), *silent, *closing(), end=True)
    finally:
        await bidi.drop(reset_first=reset_first)

    await emu.wait_for(lambda: bool(emu.streams) and emu.streams[0].finished, timeout=5)
    rec = emu.streams[0]
    assert rec.events == bidi.events
    assert rec.audio_frames == audio_frames
    assert rec.client_end_frame and rec.client_end_stream and not rec.reset_by_client
    assert rec.unclean_reasons == [] and rec.ended_cleanly


async def test_clean_close_recorded_while_the_reply_is_blocked(
    bedrock_emulator: BedrockEmulatorFactory, test_ca: LocalCA
) -> None:
    """The client stops reading mid-reply (flow control blocks the emulator, its output
    queue fills), then closes properly and drops the connection: the close still counts."""
    long_reply = Scenario(turns=(Turn(reply_audio_ms=5000),), reply_chunk_ms=20, reply_pace=0.0)
    emu = await bedrock_emulator(scenario=long_reply, faults=NO_TIMERS)
    bidi = await RawBidi.open(emu.port, test_ca)
    try:
        assert await bidi.request() == 200
        bidi.send(*opening(), *text_block("u1", "USER", "Talk a lot.", interactive=True))
        await emu.wait_for(lambda: bool(emu.streams) and bool(emu.streams[0].turns))
        await bidi.read_until_quiet()
        rec = emu.streams[0]
        # Blocked mid-reply: the initial window is used up and the rest is queued.
        assert bidi.received_data == DEFAULT_WINDOW
        assert rec.turns[0].audio_done_at is None and not rec.finished
        bidi.send(*closing(audio=None), end=True)
    finally:
        await bidi.drop()

    await emu.wait_for(lambda: rec.finished, timeout=5)
    assert rec.events == bidi.events
    assert rec.event_names[-2:] == ["promptEnd", "sessionEnd"]
    assert rec.client_end_frame and rec.client_end_stream and not rec.reset_by_client
    assert rec.unclean_reasons == [] and rec.ended_cleanly
