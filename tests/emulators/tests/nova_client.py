"""Hand-written Nova Sonic events and a thin wrapper over the REAL aws-sdk-bedrock-runtime
client, for testing the emulator. Deliberately independent of plugins/ (the client under
test elsewhere): the events here are written out from the protocol notes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
    InvokeModelWithBidirectionalStreamOutputChunk,
)

from tests.emulators.bedrock import NOVA_2_SONIC, BedrockEmulator
from tests.emulators.bedrock.sdk import make_client

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROMPT = "prompt-1"
FRAME_BYTES = 1024  # 32 ms of 16 kHz PCM16


def load_wav(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


def silence(ms: int) -> bytes:
    return b"\x00\x00" * (16 * ms)


def frames(pcm: bytes, size: int = FRAME_BYTES) -> Iterator[bytes]:
    for i in range(0, len(pcm), size):
        yield pcm[i : i + size]


# --- events --------------------------------------------------------------------------------


def ev(name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"event": {name: body}}


def session_start(**extra: Any) -> dict[str, Any]:
    return ev(
        "sessionStart",
        {"inferenceConfiguration": {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}, **extra},
    )


def prompt_start(
    voice: str = "matthew", tools: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "promptName": PROMPT,
        "textOutputConfiguration": {"mediaType": "text/plain"},
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm",
            "sampleRateHertz": 24000,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "voiceId": voice,
            "encoding": "base64",
            "audioType": "SPEECH",
        },
    }
    if tools is not None:
        body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        body["toolConfiguration"] = {"tools": tools}
    return ev("promptStart", body)


def tool_spec(name: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {
        "toolSpec": {
            "name": name,
            "description": f"The {name} tool",
            "inputSchema": {"json": json.dumps(schema)},
        }
    }


def text_start(
    name: str, role: str, *, interactive: bool = False, config: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "promptName": PROMPT,
        "contentName": name,
        "type": "TEXT",
        "interactive": interactive,
        "role": role,
    }
    if config:
        body["textInputConfiguration"] = {"mediaType": "text/plain"}
    return ev("contentStart", body)


def text_input(name: str, text: str) -> dict[str, Any]:
    return ev("textInput", {"promptName": PROMPT, "contentName": name, "content": text})


def content_end(name: str) -> dict[str, Any]:
    return ev("contentEnd", {"promptName": PROMPT, "contentName": name})


def text_block(
    name: str, role: str, text: str, *, interactive: bool = False
) -> list[dict[str, Any]]:
    return [
        text_start(name, role, interactive=interactive),
        text_input(name, text),
        content_end(name),
    ]


def audio_start(name: str = "audio-1") -> dict[str, Any]:
    return ev(
        "contentStart",
        {
            "promptName": PROMPT,
            "contentName": name,
            "type": "AUDIO",
            "interactive": True,
            "role": "USER",
            "audioInputConfiguration": {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": 16000,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "audioType": "SPEECH",
                "encoding": "base64",
            },
        },
    )


def audio_input(pcm: bytes, name: str = "audio-1") -> dict[str, Any]:
    return ev(
        "audioInput",
        {"promptName": PROMPT, "contentName": name, "content": base64.b64encode(pcm).decode()},
    )


def tool_result(name: str, tool_use_id: str, content: str) -> list[dict[str, Any]]:
    return [
        ev(
            "contentStart",
            {
                "promptName": PROMPT,
                "contentName": name,
                "interactive": False,
                "type": "TOOL",
                "role": "TOOL",
                "toolResultInputConfiguration": {
                    "toolUseId": tool_use_id,
                    "type": "TEXT",
                    "textInputConfiguration": {"mediaType": "text/plain"},
                },
            },
        ),
        ev("toolResult", {"promptName": PROMPT, "contentName": name, "content": content}),
        content_end(name),
    ]


def prompt_end() -> dict[str, Any]:
    return ev("promptEnd", {"promptName": PROMPT})


def session_end() -> dict[str, Any]:
    return ev("sessionEnd", {})


def opening(
    system: str = "You are a test.", voice: str = "matthew", **kw: Any
) -> list[dict[str, Any]]:
    return [session_start(), prompt_start(voice, **kw), *text_block("system-1", "SYSTEM", system)]


def closing(audio: str | None = "audio-1") -> list[dict[str, Any]]:
    out = [content_end(audio)] if audio else []
    return [*out, prompt_end(), session_end()]


# --- the SDK stream ------------------------------------------------------------------------


def name_of(item: object) -> str:
    """Event name of a received item, or the exception class name for modelled errors."""
    if isinstance(item, dict):
        return str(next(iter(item["event"])))
    return type(item).__name__


def more_than(name: str, count: int) -> Callable[[list[Any]], bool]:
    """Predicate: more than `count` received events are called `name`."""
    return lambda items: sum(1 for i in items if name_of(i) == name) > count


class BidiStream:
    """One InvokeModelWithBidirectionalStream call: a receiver task collects everything;
    sends are awaited one at a time by the test (the SigV4 chain needs a single writer)."""

    def __init__(self, client: AsyncBedrockRuntimeClient, stream: Any) -> None:
        self.client = client
        self._stream = stream
        self.received: list[Any] = []  # event dicts, or modelled exception objects
        self.arrived_at: list[float] = []  # time.monotonic() of each received item
        self.ended = asyncio.Event()
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self._receiver: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        emu: BedrockEmulator,
        model_id: str = NOVA_2_SONIC,
        client: AsyncBedrockRuntimeClient | None = None,
    ) -> BidiStream:
        client = client or await make_client(emu.url)
        stream = await client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id=model_id)
        )
        return cls(client, stream)

    @classmethod
    async def open_url(
        cls, client: AsyncBedrockRuntimeClient, model_id: str = NOVA_2_SONIC
    ) -> BidiStream:
        stream = await client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id=model_id)
        )
        return cls(client, stream)

    async def start_receiving(self) -> None:
        """Await the response (HTTP errors raise here) and start collecting output."""
        _, output = await self._stream.await_output()
        self._receiver = asyncio.create_task(self._receive(output))

    async def _receive(self, output: Any) -> None:
        try:
            while True:
                try:
                    item = await output.receive()
                except Exception as exc:  # modelled stream errors and codec errors
                    self.arrived_at.append(time.monotonic())
                    self.received.append(exc)
                    self.error = exc
                    return
                if item is None:
                    return
                self.arrived_at.append(time.monotonic())
                if isinstance(item, InvokeModelWithBidirectionalStreamOutputChunk):
                    raw = item.value.bytes_
                    assert raw is not None
                    self.received.append(json.loads(raw))
                else:
                    self.received.append(item)
                self._notify()
        finally:
            self.ended.set()
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def send(self, *events: dict[str, Any]) -> None:
        for event in events:
            chunk = InvokeModelWithBidirectionalStreamInputChunk(
                value=BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode())
            )
            await self._stream.input_stream.send(chunk)

    async def send_audio(self, pcm: bytes, name: str = "audio-1") -> None:
        for frame in frames(pcm):
            await self.send(audio_input(frame, name))

    async def wait_until(self, predicate: Callable[[list[Any]], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate(self.received):
                changed = self._changed
                if self.ended.is_set() and not predicate(self.received):
                    raise AssertionError(f"stream ended first; got {self.names()}")
                await changed.wait()

    async def wait_for_event(self, name: str, within: float = 5.0, **match: Any) -> dict[str, Any]:
        def find(items: list[Any]) -> dict[str, Any] | None:
            for item in items:
                if isinstance(item, dict) and name_of(item) == name:
                    body = item["event"][name]
                    if all(body.get(k) == v for k, v in match.items()):
                        return item
            return None

        await self.wait_until(lambda items: find(items) is not None, within)
        found = find(self.received)
        assert found is not None
        return found

    def names(self) -> list[str]:
        return [name_of(i) for i in self.received]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            i["event"][name] for i in self.received if isinstance(i, dict) and name_of(i) == name
        ]

    async def close_input(self) -> None:
        await self._stream.input_stream.close()

    async def wait_ended(self, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            await self.ended.wait()

    async def aclose(self, *, close_input: bool = True) -> None:
        """Close the input side (if still open) and stop the receiver.

        After an RST_STREAM, closing the input makes the CRT's body task fail with
        AWS_ERROR_HTTP_STREAM_HAS_COMPLETED, logged as "Task exception was never retrieved";
        pass close_input=False there.
        """
        if close_input:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._stream.input_stream.close()
        if self._receiver is not None and not self._receiver.done():
            self._receiver.cancel()
        if self._receiver is not None:
            await asyncio.wait([self._receiver])
