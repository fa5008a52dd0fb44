"""The conversation as the user experienced it, replayed into renewed or reconnected streams.

Assistant text is kept per turn: the SPECULATIVE chunks arrive before the audio and the
FINAL chunks after it, one FINAL per SPECULATIVE, so the k-th FINAL replaces the k-th
SPECULATIVE and unfinished tails still count. After a barge-in, `heard()` records how much
audio the user heard and the turn's text is cut in proportion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.s2s import HistoryMessage
from agent.s2s.config import Role

from .voices import HistoryLimits

BYTES_PER_MS = 24000 * 2 / 1000  # Nova's 24 kHz PCM16 output


@dataclass(slots=True)
class _Entry:
    role: Role
    at: float  # monotonic time the text arrived (user) or the turn started (assistant)
    text: str = ""  # user text
    turn_id: str | None = None
    speculative: list[str] = field(default_factory=list)
    final: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    heard_ms: float | None = None
    typed: bool = False  # sent as text input; the service may echo it as a transcript

    def content(self) -> str:
        if self.role == "user" or self.turn_id is None:
            return self.text
        chunks = self.final + self.speculative[len(self.final) :]
        text = " ".join(c.strip() for c in chunks if c.strip())
        if self.heard_ms is None:
            return text
        total_ms = self.audio_bytes / BYTES_PER_MS
        if total_ms <= 0 or self.heard_ms >= total_ms:
            return text
        return cut_text(text, self.heard_ms / total_ms)


def cut_text(text: str, fraction: float) -> str:
    """The first `fraction` of `text`, ending on a word boundary."""
    if fraction <= 0:
        return ""
    if fraction >= 1:
        return text
    end = int(len(text) * fraction)
    if end < len(text) and not text[end].isspace():
        space = text.rfind(" ", 0, end)
        end = space if space > 0 else end
    return text[:end].rstrip()


def _clip_utf8(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore").rstrip()


class Conversation:
    """Earlier messages plus the live turns of this session."""

    def __init__(self, initial: Sequence[HistoryMessage] = ()) -> None:
        self._entries: list[_Entry] = [
            _Entry(role=m.role, at=float("-inf"), text=m.text) for m in initial if m.text
        ]
        self._turns: dict[str, _Entry] = {}
        self._max_entries = 2000  # older entries never fit any model's history limit

    def __len__(self) -> int:
        return len(self._entries)

    def user(self, text: str, at: float, *, typed: bool = False) -> None:
        """A user message: a final transcript, or (typed) text the app sent. A transcript
        that repeats the latest typed text is the service's echo of it, not a new message."""
        text = text.strip()
        if not text:
            return
        if not typed:
            for entry in reversed(self._entries):
                if entry.role != "user":
                    break
                if entry.typed and entry.text == text:
                    entry.typed = False  # echoed once; a later repeat is a new message
                    return
        self._append(_Entry(role="user", at=at, text=text, typed=typed))

    def _append(self, entry: _Entry) -> None:
        self._entries.append(entry)
        if len(self._entries) > self._max_entries:
            dropped = self._entries[: len(self._entries) - self._max_entries]
            del self._entries[: len(dropped)]
            for old in dropped:
                if old.turn_id is not None:
                    self._turns.pop(old.turn_id, None)

    def _turn(self, turn_id: str, at: float) -> _Entry:
        entry = self._turns.get(turn_id)
        if entry is None:
            entry = _Entry(role="assistant", at=at, turn_id=turn_id)
            self._turns[turn_id] = entry
            self._append(entry)
        return entry

    def assistant_text(self, turn_id: str, text: str, *, final: bool, at: float) -> None:
        entry = self._turn(turn_id, at)
        (entry.final if final else entry.speculative).append(text)

    def assistant_audio(self, turn_id: str, nbytes: int, at: float) -> None:
        self._turn(turn_id, at).audio_bytes += nbytes

    def heard(self, turn_id: str | None, played_ms: float, *, estimate: bool = False) -> bool:
        """Record that only `played_ms` of the turn's audio was heard (latest turn if None).
        An `estimate` never replaces a measurement the app already gave."""
        entry = self._turns.get(turn_id) if turn_id else self._latest_assistant()
        if entry is None or (estimate and entry.heard_ms is not None):
            return False
        entry.heard_ms = max(0.0, played_ms)
        return True

    def _latest_assistant(self) -> _Entry | None:
        for entry in reversed(self._entries):
            if entry.role == "assistant":
                return entry
        return None

    def has_turn(self, turn_id: str) -> bool:
        return turn_id in self._turns

    def text_of(self, turn_id: str) -> str:
        entry = self._turns.get(turn_id)
        return entry.content() if entry else ""

    def messages(
        self, limits: HistoryLimits, *, drop_user_since: float | None = None
    ) -> list[HistoryMessage]:
        """History for a new stream: merged same-role turns, starting with USER, in limits.

        A trailing USER message that arrived at or after `drop_user_since` is left out
        because its audio is about to be replayed.
        """
        raw = [(e.role, e.content(), e.at) for e in self._entries]
        raw = [(role, text, at) for role, text, at in raw if text]
        if raw and drop_user_since is not None:
            role, _, at = raw[-1]
            if role == "user" and at >= drop_user_since:
                raw.pop()
        merged: list[HistoryMessage] = []
        for role, text, _ in raw:
            if merged and merged[-1].role == role:
                merged[-1] = HistoryMessage(role=role, text=f"{merged[-1].text} {text}")
            else:
                merged.append(HistoryMessage(role=role, text=text))
        return fit(merged, limits)


def fit(messages: list[HistoryMessage], limits: HistoryLimits) -> list[HistoryMessage]:
    """Clip each message, keep the newest that fit the count and size caps, start with USER."""
    clipped = [
        HistoryMessage(role=m.role, text=_clip_utf8(m.text, limits.max_message_bytes))
        for m in messages
    ]
    kept: list[HistoryMessage] = []
    total = 0
    for message in reversed(clipped):
        size = len(message.text.encode())
        if len(kept) >= limits.max_messages or total + size > limits.max_total_bytes:
            break
        kept.append(message)
        total += size
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept
