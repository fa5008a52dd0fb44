"""AWS event-stream framing (application/vnd.amazon.eventstream), written from the format.

Message layout (all integers big-endian):
    prelude   u32 total length | u32 headers length | u32 CRC32(first 8 bytes)
    headers   repeated: u8 name length, name (UTF-8), u8 type, value
    payload
    trailer   u32 CRC32(everything before it)

Header value types: 0 true, 1 false, 2 i8, 3 i16, 4 i32, 5 i64, 6 bytes (u16 length),
7 string (u16 length), 8 timestamp (i64 milliseconds since the epoch), 9 UUID (16 bytes).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum

PRELUDE_LEN = 12
TRAILER_LEN = 4
MIN_MESSAGE_LEN = PRELUDE_LEN + TRAILER_LEN
# The service caps messages at 16 MiB and headers at 128 KiB.
MAX_MESSAGE_LEN = 16 * 1024 * 1024
MAX_HEADERS_LEN = 128 * 1024


class HeaderType(IntEnum):
    TRUE = 0
    FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTES = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


HeaderValue = bool | int | bytes | str | uuid.UUID

_INT_FORMATS: dict[HeaderType, str] = {
    HeaderType.BYTE: ">b",
    HeaderType.SHORT: ">h",
    HeaderType.INTEGER: ">i",
    HeaderType.LONG: ">q",
    HeaderType.TIMESTAMP: ">q",
}


class EventStreamError(Exception):
    """Malformed event-stream bytes."""


class ChecksumError(EventStreamError):
    """A prelude or message CRC32 does not match."""


@dataclass(frozen=True)
class Header:
    name: str
    type: HeaderType
    value: HeaderValue

    @staticmethod
    def string(name: str, value: str) -> Header:
        return Header(name, HeaderType.STRING, value)

    @staticmethod
    def bytes_(name: str, value: bytes) -> Header:
        return Header(name, HeaderType.BYTES, value)

    @staticmethod
    def timestamp_ms(name: str, value: int) -> Header:
        return Header(name, HeaderType.TIMESTAMP, value)

    def encode(self) -> bytes:
        name = self.name.encode("utf-8")
        if not 0 < len(name) <= 255:
            raise EventStreamError(f"header name length {len(name)} out of range")
        out = bytearray([len(name)])
        out += name
        out.append(self.type)
        value = self.value
        match self.type:
            case HeaderType.TRUE | HeaderType.FALSE:
                expected = self.type is HeaderType.TRUE
                if value is not expected:
                    raise EventStreamError(
                        f"header {self.name}: type {self.type.name} vs {value!r}"
                    )
            case HeaderType.BYTES | HeaderType.STRING:
                raw = value.encode("utf-8") if isinstance(value, str) else value
                if not isinstance(raw, bytes) or len(raw) > 0xFFFF:
                    raise EventStreamError(f"header {self.name}: bad bytes/string value")
                out += struct.pack(">H", len(raw)) + raw
            case HeaderType.UUID:
                if not isinstance(value, uuid.UUID):
                    raise EventStreamError(f"header {self.name}: UUID expected")
                out += value.bytes
            case _:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise EventStreamError(f"header {self.name}: integer expected")
                try:
                    out += struct.pack(_INT_FORMATS[self.type], value)
                except struct.error as exc:
                    raise EventStreamError(f"header {self.name}: {exc}") from exc
        return bytes(out)


@dataclass(frozen=True)
class Message:
    headers: tuple[Header, ...]
    payload: bytes

    def get(self, name: str) -> HeaderValue | None:
        for header in self.headers:
            if header.name == name:
                return header.value
        return None

    def get_header(self, name: str) -> Header | None:
        for header in self.headers:
            if header.name == name:
                return header
        return None

    def string(self, name: str) -> str | None:
        value = self.get(name)
        return value if isinstance(value, str) else None


def encode_headers(headers: Iterable[Header]) -> bytes:
    return b"".join(header.encode() for header in headers)


def encode_message(headers: Iterable[Header], payload: bytes) -> bytes:
    header_bytes = encode_headers(headers)
    total = PRELUDE_LEN + len(header_bytes) + len(payload) + TRAILER_LEN
    if total > MAX_MESSAGE_LEN or len(header_bytes) > MAX_HEADERS_LEN:
        raise EventStreamError("message too large")
    prelude = struct.pack(">II", total, len(header_bytes))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + header_bytes + payload
    return body + struct.pack(">I", zlib.crc32(body))


def decode_headers(data: bytes) -> tuple[Header, ...]:
    headers: list[Header] = []
    names: set[str] = set()
    pos = 0
    end = len(data)

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > end:
            raise EventStreamError("header runs past the headers section")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    while pos < end:
        name_len = take(1)[0]
        if name_len == 0:
            raise EventStreamError("empty header name")
        name = take(name_len).decode("utf-8")
        if name in names:
            raise EventStreamError(f"duplicate header {name}")
        names.add(name)
        try:
            htype = HeaderType(take(1)[0])
        except ValueError as exc:
            raise EventStreamError(f"unknown header type for {name}") from exc
        value: HeaderValue
        match htype:
            case HeaderType.TRUE:
                value = True
            case HeaderType.FALSE:
                value = False
            case HeaderType.BYTES | HeaderType.STRING:
                (length,) = struct.unpack(">H", take(2))
                raw = take(length)
                value = raw.decode("utf-8") if htype is HeaderType.STRING else raw
            case HeaderType.UUID:
                value = uuid.UUID(bytes=take(16))
            case _:
                fmt = _INT_FORMATS[htype]
                (value,) = struct.unpack(fmt, take(struct.calcsize(fmt)))
        headers.append(Header(name, htype, value))
    return tuple(headers)


def decode_message(data: bytes) -> Message:
    """Decode exactly one complete message."""
    if len(data) < MIN_MESSAGE_LEN:
        raise EventStreamError("message shorter than prelude and trailer")
    total, headers_len, prelude_crc = struct.unpack(">III", data[:PRELUDE_LEN])
    if zlib.crc32(data[:8]) != prelude_crc:
        raise ChecksumError("prelude CRC mismatch")
    if total != len(data):
        raise EventStreamError(f"total length {total} != {len(data)} bytes given")
    if headers_len > total - MIN_MESSAGE_LEN or headers_len > MAX_HEADERS_LEN:
        raise EventStreamError("headers length out of range")
    (message_crc,) = struct.unpack(">I", data[-TRAILER_LEN:])
    if zlib.crc32(data[:-TRAILER_LEN]) != message_crc:
        raise ChecksumError("message CRC mismatch")
    headers = decode_headers(data[PRELUDE_LEN : PRELUDE_LEN + headers_len])
    payload = data[PRELUDE_LEN + headers_len : -TRAILER_LEN]
    return Message(headers, bytes(payload))


class MessageDecoder:
    """Incremental decoder: feed arbitrary byte chunks, get whole messages back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Message]:
        self._buf += data
        while len(self._buf) >= PRELUDE_LEN:
            total, _, prelude_crc = struct.unpack(">III", self._buf[:PRELUDE_LEN])
            if zlib.crc32(self._buf[:8]) != prelude_crc:
                raise ChecksumError("prelude CRC mismatch")
            if not MIN_MESSAGE_LEN <= total <= MAX_MESSAGE_LEN:
                raise EventStreamError(f"message length {total} out of range")
            if len(self._buf) < total:
                return
            raw = bytes(self._buf[:total])
            del self._buf[:total]
            yield decode_message(raw)
