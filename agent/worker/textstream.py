"""The small text-stream surface the worker writes transcripts to (rtc.LocalParticipant in a
room, a recorder in tests)."""

from __future__ import annotations

import uuid
from typing import Protocol

# Names LiveKit clients (agents playground, React voice components) read.
TOPIC_TRANSCRIPTION = "lk.transcription"
ATTR_SEGMENT_ID = "lk.segment_id"
ATTR_TRANSCRIPTION_FINAL = "lk.transcription_final"
ATTR_TRANSCRIBED_TRACK_ID = "lk.transcribed_track_id"
ATTR_AGENT_STATE = "lk.agent.state"


class TextWriter(Protocol):
    async def write(self, text: str) -> None: ...

    async def aclose(
        self, *, reason: str = "", attributes: dict[str, str] | None = None
    ) -> None: ...


class TextStreams(Protocol):
    """Opens a text stream: rtc.LocalParticipant.stream_text has this shape."""

    async def stream_text(
        self,
        *,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        sender_identity: str | None = None,
    ) -> TextWriter: ...


def new_segment_id() -> str:
    return "SG_" + uuid.uuid4().hex[:12]
