"""The emulator's own codec, SigV4 and endpointer, checked against independent references:
the SDK's event-stream implementation and AWS's published SigV4 examples."""

from __future__ import annotations

import datetime
import io
import json
import uuid

import numpy as np
import pytest
from smithy_aws_event_stream.events import Byte, Event, EventMessage, Long, Short

from tests.emulators.bedrock import Faults, Scenario, ToolCallSpec, Turn
from tests.emulators.bedrock.audio import (
    EnergyEndpointer,
    SpeechEvent,
    dominant_frequency,
    sine_pcm16,
)
from tests.emulators.bedrock.eventstream import (
    ChecksumError,
    EventStreamError,
    Header,
    HeaderType,
    Message,
    MessageDecoder,
    decode_message,
    encode_message,
)
from tests.emulators.bedrock.sigv4 import (
    Credentials,
    SignatureError,
    canonical_uri,
    signing_key,
    verify_request,
)

from .nova_client import load_wav, silence

pytestmark = pytest.mark.timeout(10)

UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")
STAMP = datetime.datetime(2026, 11, 21, 12, 0, 0, 123000, tzinfo=datetime.UTC)
STAMP_MS = int(STAMP.timestamp() * 1000)
ALL_TYPES = (
    Header("t", HeaderType.TRUE, True),
    Header("f", HeaderType.FALSE, False),
    Header("i8", HeaderType.BYTE, -7),
    Header("i16", HeaderType.SHORT, -300),
    Header("i32", HeaderType.INTEGER, 70000),
    Header("i64", HeaderType.LONG, -(2**40)),
    Header("blob", HeaderType.BYTES, b"\x00\xffraw"),
    Header("str", HeaderType.STRING, "héllo"),
    Header("ts", HeaderType.TIMESTAMP, STAMP_MS),
    Header("id", HeaderType.UUID, UUID),
)


def test_all_header_types_round_trip() -> None:
    data = encode_message(ALL_TYPES, b'{"x":1}')
    message = decode_message(data)
    assert message.headers == ALL_TYPES and message.payload == b'{"x":1}'


def test_sdk_decodes_what_we_encode() -> None:
    event = Event.decode(io.BytesIO(encode_message(ALL_TYPES, b"payload")))
    assert event is not None
    headers = event.message.headers
    assert headers["t"] is True and headers["f"] is False
    assert (headers["i8"], headers["i16"], headers["i32"], headers["i64"]) == (
        -7,
        -300,
        70000,
        -(2**40),
    )
    assert headers["blob"] == b"\x00\xffraw" and headers["str"] == "héllo"
    assert headers["ts"] == STAMP and headers["id"] == UUID
    assert event.message.payload == b"payload"


def test_we_decode_what_the_sdk_encodes() -> None:
    sdk = EventMessage(
        headers={
            "t": True,
            "f": False,
            "i8": Byte(-7),
            "i16": Short(-300),
            "i32": 70000,
            "i64": Long(-(2**40)),
            "blob": b"\x00\xffraw",
            "str": "héllo",
            "ts": STAMP,
            "id": UUID,
        },
        payload=b"payload",
    )
    message = decode_message(sdk.encode())
    assert message.headers == ALL_TYPES and message.payload == b"payload"


def test_incremental_decoding_byte_by_byte() -> None:
    first = encode_message((Header.string(":event-type", "chunk"),), b"one")
    second = encode_message((), b"two")
    decoder = MessageDecoder()
    got: list[Message] = []
    for byte in first + second:
        got.extend(decoder.feed(bytes([byte])))
    assert [m.payload for m in got] == [b"one", b"two"] and decoder.pending == 0
    assert list(decoder.feed(second[:10])) == [] and decoder.pending == 10


@pytest.mark.parametrize(("offset", "error"), [(9, ChecksumError), (-1, ChecksumError)])
def test_crc_errors(offset: int, error: type[Exception]) -> None:
    data = bytearray(encode_message((Header.string("a", "b"),), b"payload"))
    data[offset] ^= 0x01
    with pytest.raises(error):
        list(MessageDecoder().feed(bytes(data)))


def test_bad_lengths_rejected() -> None:
    data = encode_message((), b"payload")
    with pytest.raises(EventStreamError):
        decode_message(data[:-1])
    with pytest.raises(EventStreamError):
        Header("x", HeaderType.BYTE, 300).encode()


def test_signing_key_matches_aws_example() -> None:
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


@pytest.mark.parametrize(
    ("path", "signature"),
    [
        ("/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
def test_request_signature_matches_aws_test_suite(path: str, signature: str) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    headers = {
        "host": "example.amazonaws.com",
        "x-amz-date": "20150830T123600Z",
        "authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
        f"aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}",
    }
    now = datetime.datetime(2015, 8, 30, 12, 40, tzinfo=datetime.UTC)

    def verify(method: str, at: datetime.datetime) -> None:
        verify_request(
            method=method,
            path=path,
            headers=headers,
            credentials=credentials,
            region="us-east-1",
            service="service",
            now=at,
        )

    verify("GET", now)
    with pytest.raises(SignatureError, match="does not match"):
        verify("POST", now)
    with pytest.raises(SignatureError, match="Signature expired"):
        verify("GET", now + datetime.timedelta(minutes=20))


def test_canonical_uri_encodes_the_wire_path_again() -> None:
    wire = "/model/amazon.nova-sonic-v1%3A0/invoke-with-bidirectional-stream"
    assert (
        canonical_uri(wire) == "/model/amazon.nova-sonic-v1%253A0/invoke-with-bidirectional-stream"
    )


def test_endpointer_on_a_spoken_fixture() -> None:
    endpointer = EnergyEndpointer(start_ms=120, min_speech_ms=200, min_silence_ms=400)
    speech = load_wav("stop_joke.wav")  # has a 300 ms pause after "Stop,"
    detections = []
    for i in range(0, len(speech + silence(600)), 1000):
        detections.extend(endpointer.feed((speech + silence(600))[i : i + 1000]))
    assert [d.kind for d in detections] == [SpeechEvent.STARTED, SpeechEvent.ENDED]
    ended = detections[1]
    # 400 ms after the last voiced window; the file ends with a 100 ms pad and a soft tail.
    assert len(speech) / 32 + 200 <= ended.audio_ms <= len(speech) / 32 + 420


def test_endpointer_ignores_blips_and_silence() -> None:
    endpointer = EnergyEndpointer(start_ms=120, min_speech_ms=200, min_silence_ms=400)
    blip = sine_pcm16(100, 300.0, 16000)  # 100 ms: shorter than the minimum speech
    assert endpointer.feed(silence(500) + blip + silence(500)) == []
    noise = (np.random.default_rng(1).normal(0, 100, 16000)).astype("<i2").tobytes()
    assert endpointer.feed(noise) == []  # RMS 100 < 500


def test_sine_and_dominant_frequency() -> None:
    tone = sine_pcm16(500, 440.0, 24000)
    assert len(tone) == 24000
    assert abs(dominant_frequency(tone, 24000) - 440.0) < 3.0


def test_scenario_and_faults_json_round_trip() -> None:
    scenario = Scenario(
        turns=(
            Turn(user_text="a", reply_text="b", tool_call=ToolCallSpec("t", {"x": 1}, True)),
            Turn(),
        ),
        reply_pace=2.0,
    )
    encoded = json.loads(json.dumps(scenario.to_json()))
    assert Scenario.from_json(encoded) == scenario
    faults = Faults(
        reset_on_turn=2, throttle_first=1, internal_error_type="modelStreamErrorException"
    )
    assert Faults.from_json(json.loads(json.dumps(faults.to_json()))) == faults
