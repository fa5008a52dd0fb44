"""User and agent transcripts as `lk.transcription` text streams, the way LiveKit clients
(agents playground, React voice components) read them.

- The user's words: one short stream per update, sent on the user's behalf (sender = the user,
  `lk.transcribed_track_id` = their microphone track); each carries the segment's full text so
  far, the last one `lk.transcription_final = "true"`.
- The agent's words: one stream per reply (sender = the agent, track = its audio track), the
  text written as deltas released in step with playout, closed with final attributes. An
  interrupted reply is closed with only the words that were heard.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .textstream import (
    ATTR_SEGMENT_ID,
    ATTR_TRANSCRIBED_TRACK_ID,
    ATTR_TRANSCRIPTION_FINAL,
    TOPIC_TRANSCRIPTION,
    TextStreams,
    TextWriter,
    new_segment_id,
)

log = logging.getLogger(__name__)

_WORD = re.compile(r"\s*\S+\s*")


def merge_text(current: str, incoming: str) -> str:
    """Providers send either deltas or the text so far: accept both."""
    if not current:
        return incoming
    if incoming.startswith(current):
        return incoming
    if current.endswith(incoming):  # a repeat of the tail (e.g. a final echoing the last delta)
        return current
    if current[-1:].isspace() or incoming[:1].isspace() or incoming[:1] in ",.;:!?)":
        return current + incoming
    return current + " " + incoming


def released_prefix(text: str, fraction: float, *, complete: bool) -> str:
    """The first `fraction` of `text`'s words (rounded down), trailing whitespace kept.
    While the text is still growing, a last word without trailing space may be cut: hold it."""
    words = _WORD.findall(text)
    count = len(words) if fraction >= 1.0 else math.floor(len(words) * max(fraction, 0.0))
    if not complete and count == len(words) and words and not words[-1][-1:].isspace():
        count -= 1
    return "".join(words[:count])


class UserTranscripts:
    """Publishes what the user said, segment by segment."""

    def __init__(self, streams: TextStreams) -> None:
        self._streams = streams
        self._segment_id: str | None = None
        self._turn: str | None = None
        self._text = ""
        self.participant_identity: str | None = None
        self.track_sid: str | None = None

    async def on_text(self, text: str, *, final: bool, turn_id: str | None) -> None:
        if self.participant_identity is None:
            return
        if self._segment_id is None or (turn_id is not None and turn_id != self._turn):
            self._segment_id = new_segment_id()
            self._turn = turn_id
            self._text = ""
        self._text = merge_text(self._text, text)
        attributes = {
            ATTR_SEGMENT_ID: self._segment_id,
            ATTR_TRANSCRIPTION_FINAL: "true" if final else "false",
        }
        if self.track_sid:
            attributes[ATTR_TRANSCRIBED_TRACK_ID] = self.track_sid
        text_now = self._text
        if final:
            self._segment_id = None
        try:
            writer = await self._streams.stream_text(
                topic=TOPIC_TRANSCRIPTION,
                attributes=attributes,
                sender_identity=self.participant_identity,
            )
            await writer.write(text_now)
            await writer.aclose()
        except Exception as exc:  # a room hiccup must not end the conversation
            log.warning("failed to publish the user transcript: %s", exc)


_CLOSED_TURNS_KEPT = 32


@dataclass
class _Reply:
    turn_id: str | None
    segment_id: str = field(default_factory=new_segment_id)
    text: str = ""
    sent: str = ""
    # Non-final chunks not yet confirmed by a final one (Nova sends each sentence twice:
    # SPECULATIVE before its audio, FINAL after).
    unconfirmed: list[str] = field(default_factory=list)
    text_done: bool = False  # TURN_END arrived: no more text for this reply
    writer: TextWriter | None = None
    closed: bool = False

    def add(self, text: str, *, final: bool) -> None:
        key = text.strip()
        if final and key in self.unconfirmed:
            self.unconfirmed.remove(key)  # the final version of text already shown
            return
        if not final and key:
            self.unconfirmed.append(key)
        self.text = merge_text(self.text, text)


class AgentTranscript:
    """Releases the agent's reply text in step with what has been played.

    `progress(turn_id)` returns (played_ms, received_ms) for a reply: how much of it has been
    heard and how much audio the provider has sent for it so far. The text released is the
    same fraction of its words. Call `tick()` periodically (and after each update).
    """

    def __init__(
        self,
        streams: TextStreams,
        *,
        identity: str,
        progress: Callable[[str | None], tuple[float, float]],
    ) -> None:
        self._streams = streams
        self._identity = identity
        self._progress = progress
        self._reply: _Reply | None = None
        self._closed_turns: dict[str, None] = {}
        self.track_sid: str | None = None

    @property
    def active(self) -> bool:
        return self._reply is not None and not self._reply.closed

    @property
    def text_done(self) -> bool:
        return self._reply is not None and self._reply.text_done

    @property
    def segment_id(self) -> str | None:
        return self._reply.segment_id if self._reply else None

    async def on_text(self, text: str, *, final: bool, turn_id: str | None) -> None:
        if turn_id is not None and turn_id in self._closed_turns:
            # Late text of a reply already closed (e.g. Nova's FINAL text after a barge-in):
            # what was heard has been published; showing the rest would be wrong.
            log.debug("dropping late text for closed turn %s", turn_id)
            return
        reply = self._reply
        if reply is not None and turn_id is not None and reply.turn_id not in (None, turn_id):
            # A new turn while the last is still open: the last was cut off by something the
            # bridge reported elsewhere; close it with what was heard.
            await self.finish(interrupted=True)
            reply = None
        if reply is None or reply.closed:
            reply = self._reply = _Reply(turn_id=turn_id)
        reply.add(text, final=final)
        await self.tick()

    def turn_ended(self, turn_id: str | None) -> None:
        """The provider finished the reply (TURN_END): the text is complete."""
        reply = self._reply
        if reply is not None and (turn_id is None or reply.turn_id in (None, turn_id)):
            reply.text_done = True

    def _fraction(self, reply: _Reply, played_ms: float | None = None) -> float:
        played, audio = self._progress(reply.turn_id)
        if audio <= 0.0:
            return 0.0
        if played_ms is not None:
            played = played_ms
        return min(1.0, played / audio)

    async def tick(self) -> None:
        """Send the words now due; close the segment once a complete reply has played."""
        reply = self._reply
        if reply is None or reply.closed:
            return
        fraction = self._fraction(reply)
        played_out = reply.text_done and fraction >= 1.0
        due = released_prefix(reply.text, 1.0 if played_out else fraction, complete=played_out)
        await self._send(reply, due)
        if played_out:
            await self._close(reply)

    async def interrupted(self, turn_id: str | None, heard_ms: float) -> None:
        """The user barged in on `turn_id`: close its segment with the words heard, and
        ignore any text still to come for it."""
        if turn_id is not None:
            self._remember_closed(turn_id)
        reply = self._reply
        if reply is not None and (turn_id is None or reply.turn_id in (None, turn_id)):
            await self.finish(interrupted=True, heard_ms=heard_ms)

    async def finish(self, *, interrupted: bool, heard_ms: float | None = None) -> None:
        """End the reply now: with every word (played out, or the provider gave no audio),
        or, when interrupted, with the words heard (`heard_ms`, default: played so far)."""
        reply = self._reply
        if reply is None or reply.closed:
            return
        if interrupted:
            fraction = self._fraction(reply, heard_ms)
            due = released_prefix(reply.text, fraction, complete=fraction >= 1.0)
        else:
            due = reply.text
        await self._send(reply, due)
        await self._close(reply)

    async def _send(self, reply: _Reply, due: str) -> None:
        if len(due) <= len(reply.sent) or not due.startswith(reply.sent):
            return
        delta = due[len(reply.sent) :]
        try:
            if reply.writer is None:
                reply.writer = await self._streams.stream_text(
                    topic=TOPIC_TRANSCRIPTION,
                    attributes=self._attributes(reply, final=False),
                    sender_identity=self._identity,
                )
            await reply.writer.write(delta)
            reply.sent = due
        except Exception as exc:
            log.warning("failed to publish the agent transcript: %s", exc)

    def _remember_closed(self, turn_id: str) -> None:
        self._closed_turns[turn_id] = None
        if len(self._closed_turns) > _CLOSED_TURNS_KEPT:
            del self._closed_turns[next(iter(self._closed_turns))]

    async def _close(self, reply: _Reply) -> None:
        reply.closed = True
        if reply.turn_id is not None:
            self._remember_closed(reply.turn_id)
        if reply.writer is None:
            return  # nothing was heard: no segment at all
        try:
            await reply.writer.aclose(attributes=self._attributes(reply, final=True))
        except Exception as exc:
            log.warning("failed to close the agent transcript: %s", exc)

    def _attributes(self, reply: _Reply, *, final: bool) -> dict[str, str]:
        attributes = {
            ATTR_SEGMENT_ID: reply.segment_id,
            ATTR_TRANSCRIPTION_FINAL: "true" if final else "false",
        }
        if self.track_sid:
            attributes[ATTR_TRANSCRIBED_TRACK_ID] = self.track_sid
        return attributes
