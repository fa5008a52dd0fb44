"""What the emulator saw and did, per request stream, for tests to assert on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class TurnRecord:
    number: int  # 1-based across the emulator (the numbering Faults use)
    trigger: Literal["audio", "text"]
    transcript: str
    reply_text: str
    triggered_at: float  # time.monotonic()
    first_event_at: float | None = None  # first reply event sent (user transcript block)
    first_audio_at: float | None = None  # first reply audio byte sent
    audio_done_at: float | None = None
    audio_bytes_sent: int = 0
    audio_ms: float = 0.0
    tool_use_id: str | None = None
    tool_result: str | None = None
    interrupted: bool = False
    # END_TURN, INTERRUPTED, or the fault/cut that ended it (RESET, BAD_CRC, ...).
    end: str | None = None


@dataclass
class StreamRecord:
    id: int
    connection_id: int
    path: str
    model_id: str
    started_at: float
    http_status: int = 0
    http_error_type: str | None = None
    # Every received event JSON, in order (audioInput content included).
    events: list[dict[str, Any]] = field(default_factory=list)
    # Every event the emulator sent (exceptions appear in `exceptions_sent`).
    sent_events: list[dict[str, Any]] = field(default_factory=list)
    # audioInput events the model took (one per event, whatever its length) and their PCM;
    # events after the service ended its side are only in `events`.
    audio_frames: int = 0
    audio_bytes: int = 0
    audio_in: bytearray = field(default_factory=bytearray, repr=False)
    # Events that arrived after the client's own sessionEnd (e.g. audio still streaming).
    events_after_session_end: int = 0
    signed_frames: int = 0
    signature_failures: int = 0
    signature_failure_reasons: list[str] = field(default_factory=list)
    exceptions_sent: list[tuple[str, str]] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    completion_started: bool = False
    client_end_frame: bool = False  # the empty signed outer message
    client_end_stream: bool = False  # HTTP/2 END_STREAM from the client
    server_end_stream: bool = False
    reset_by_server: bool = False
    reset_by_client: bool = False  # before its END_STREAM (a reset after it is harmless)
    ended_cleanly: bool = False
    # Why ended_cleanly is False (empty when it is True), e.g. "no sessionEnd".
    unclean_reasons: list[str] = field(default_factory=list)
    ended_at: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def event_names(self) -> list[str]:
        names: list[str] = []
        for event in self.events:
            body = event.get("event")
            if isinstance(body, dict) and body:
                names.append(next(iter(body)))
            else:
                names.append("?")
        return names

    @property
    def sent_event_names(self) -> list[str]:
        return [next(iter(e["event"])) for e in self.sent_events]

    @property
    def exception_types(self) -> list[str]:
        return [t for t, _ in self.exceptions_sent]

    @property
    def finished(self) -> bool:
        return self.ended_at is not None
