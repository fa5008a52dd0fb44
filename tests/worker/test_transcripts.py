from __future__ import annotations

import pytest

from agent.worker.transcripts import (
    AgentTranscript,
    UserTranscripts,
    merge_text,
    released_prefix,
)

from .fakes import RecordingStreams

TEXT = "one two three four five six seven eight nine ten"


def test_merge_accepts_deltas_and_cumulative_text() -> None:
    assert merge_text("", "Hello") == "Hello"
    assert merge_text("Hello", " there") == "Hello there"
    assert merge_text("Hello", "there") == "Hello there"
    assert merge_text("Hello", ", friend") == "Hello, friend"
    assert merge_text("Hello there", "Hello there, friend") == "Hello there, friend"
    assert merge_text("Hello there", "there") == "Hello there"  # a final repeating the tail


def test_released_prefix_counts_whole_words() -> None:
    assert released_prefix(TEXT, 0.0, complete=True) == ""
    assert released_prefix(TEXT, 0.5, complete=True) == "one two three four five "
    assert released_prefix(TEXT, 0.29, complete=True) == "one two "
    assert released_prefix(TEXT, 1.0, complete=True) == TEXT
    # A still-growing text may end mid-word: its last word is held back.
    assert released_prefix("one two thr", 1.0, complete=False) == "one two "


async def test_user_transcript_segments_on_behalf_of_the_user() -> None:
    streams = RecordingStreams()
    user = UserTranscripts(streams)
    user.participant_identity = "alice"
    user.track_sid = "TR_mic"
    await user.on_text("what is", final=False, turn_id="u1")
    await user.on_text(" the time", final=False, turn_id="u1")
    await user.on_text("what is the time", final=True, turn_id="u1")
    await user.on_text("thanks", final=True, turn_id="u2")

    assert [s.text for s in streams.streams] == [
        "what is",
        "what is the time",
        "what is the time",
        "thanks",
    ]
    for s in streams.streams:
        assert s.topic == "lk.transcription"
        assert s.sender_identity == "alice"
        assert s.attributes["lk.transcribed_track_id"] == "TR_mic"
        assert s.closed
    finals = [s.attributes["lk.transcription_final"] for s in streams.streams]
    assert finals == ["false", "false", "true", "true"]
    segments = [s.attributes["lk.segment_id"] for s in streams.streams]
    assert segments[0] == segments[1] == segments[2] != segments[3]
    assert all(seg.startswith("SG_") for seg in segments)


async def test_user_transcript_waits_for_a_participant() -> None:
    streams = RecordingStreams()
    await UserTranscripts(streams).on_text("hello", final=True, turn_id="u1")
    assert streams.streams == []


class Playout:
    """A controllable (played, received) clock for one reply."""

    def __init__(self) -> None:
        self.played = 0.0
        self.received = 0.0

    def __call__(self, turn_id: str | None) -> tuple[float, float]:
        return self.played, self.received


def agent_transcript(streams: RecordingStreams, clock: Playout) -> AgentTranscript:
    tx = AgentTranscript(streams, identity="agent-1", progress=clock)
    tx.track_sid = "TR_agent"
    return tx


async def test_agent_words_are_released_with_playout() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received = 1000.0
    await tx.on_text(TEXT, final=True, turn_id="t1")
    assert streams.streams == []  # nothing heard yet: nothing shown

    clock.played = 300.0
    await tx.tick()
    (stream,) = streams.streams
    assert stream.text == "one two three "
    assert stream.sender_identity == "agent-1"
    assert stream.attributes["lk.transcription_final"] == "false"
    assert stream.attributes["lk.transcribed_track_id"] == "TR_agent"
    assert not stream.closed

    clock.played = 700.0
    await tx.tick()
    assert stream.text == "one two three four five six seven "
    assert stream.chunks == ["one two three ", "four five six seven "]  # deltas

    tx.turn_ended("t1")
    clock.played = 1000.0
    await tx.tick()
    assert stream.text == TEXT
    assert stream.closed
    assert stream.final_attributes["lk.transcription_final"] == "true"
    assert stream.final_attributes["lk.segment_id"] == stream.attributes["lk.segment_id"]
    assert not tx.active


async def test_complete_text_is_not_closed_before_it_has_played() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received, clock.played = 1000.0, 500.0
    await tx.on_text(TEXT, final=True, turn_id="t1")
    tx.turn_ended("t1")
    await tx.tick()
    assert streams.streams[0].text == "one two three four five "
    assert not streams.streams[0].closed


async def test_interrupted_reply_is_truncated_to_what_was_heard() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received, clock.played = 2000.0, 200.0
    await tx.on_text(TEXT, final=False, turn_id="t1")
    await tx.tick()
    await tx.finish(interrupted=True, heard_ms=600.0)
    (stream,) = streams.streams
    assert stream.text == "one two three "
    assert stream.closed
    assert stream.final_attributes["lk.transcription_final"] == "true"


async def test_reply_interrupted_before_any_playout_leaves_no_segment() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received = 1000.0
    await tx.on_text(TEXT, final=True, turn_id="t1")
    await tx.finish(interrupted=True, heard_ms=0.0)
    assert streams.streams == []
    assert not tx.active


async def test_text_only_reply_is_shown_whole_when_finished() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    await tx.on_text("No audio at all.", final=True, turn_id="t1")
    await tx.tick()
    assert streams.streams == []
    await tx.finish(interrupted=False)
    assert streams.streams[0].text == "No audio at all."
    assert streams.streams[0].closed


async def test_each_reply_gets_its_own_segment() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received = clock.played = 100.0
    await tx.on_text("first reply", final=True, turn_id="t1")
    tx.turn_ended("t1")
    await tx.tick()
    await tx.on_text("second reply", final=True, turn_id="t2")
    tx.turn_ended("t2")
    await tx.tick()
    first, second = streams.streams
    assert (first.text, second.text) == ("first reply", "second reply")
    assert first.attributes["lk.segment_id"] != second.attributes["lk.segment_id"]
    assert first.closed and second.closed


async def test_a_new_turn_closes_an_unfinished_one() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received, clock.played = 1000.0, 500.0
    await tx.on_text(TEXT, final=False, turn_id="t1")
    await tx.on_text("next", final=False, turn_id="t2")
    first = streams.streams[0]
    assert first.closed
    assert first.text == "one two three four five "


@pytest.mark.parametrize("fail_at", ["open", "write"])
async def test_room_errors_do_not_raise(fail_at: str) -> None:
    class Failing(RecordingStreams):
        async def stream_text(self, **kwargs):  # type: ignore[no-untyped-def]
            if fail_at == "open":
                raise RuntimeError("room gone")
            writer = await super().stream_text(**kwargs)

            async def write(text: str) -> None:
                raise RuntimeError("room gone")

            writer.write = write  # type: ignore[method-assign]
            return writer

    clock = Playout()
    clock.received = clock.played = 100.0
    tx = agent_transcript(Failing(), clock)
    await tx.on_text("hello", final=True, turn_id="t1")
    await tx.finish(interrupted=False)
    user = UserTranscripts(Failing())
    user.participant_identity = "alice"
    await user.on_text("hi", final=True, turn_id="u1")


async def test_speculative_then_final_text_is_shown_once() -> None:
    # Nova sends each sentence twice: SPECULATIVE before its audio, FINAL after it.
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received = clock.played = 100.0
    await tx.on_text("Sunny today.", final=False, turn_id="t1")
    await tx.on_text("Warm tomorrow.", final=False, turn_id="t1")
    await tx.on_text("Sunny today.", final=True, turn_id="t1")
    await tx.on_text("Warm tomorrow.", final=True, turn_id="t1")
    tx.turn_ended("t1")
    await tx.tick()
    (stream,) = streams.streams
    assert stream.text == "Sunny today. Warm tomorrow."
    assert stream.closed


async def test_a_final_text_does_not_end_the_reply_early() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received = clock.played = 500.0  # everything received so far has played...
    await tx.on_text("First sentence.", final=True, turn_id="t1")
    await tx.tick()
    assert tx.active  # ...but without TURN_END more may come
    await tx.on_text("Second one.", final=True, turn_id="t1")
    tx.turn_ended("t1")
    await tx.tick()
    (stream,) = streams.streams
    assert stream.text == "First sentence. Second one."


async def test_late_text_of_an_interrupted_turn_is_dropped() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    clock.received, clock.played = 4000.0, 1000.0
    await tx.on_text(TEXT, final=False, turn_id="t1")
    await tx.interrupted("t1", heard_ms=1000.0)
    await tx.on_text(TEXT, final=True, turn_id="t1")  # Nova's FINAL, after the barge-in
    tx.turn_ended("t1")
    await tx.finish(interrupted=False)
    (stream,) = streams.streams
    assert stream.text == "one two "
    assert not tx.active


async def test_interrupt_before_any_text_drops_the_turns_text() -> None:
    streams, clock = RecordingStreams(), Playout()
    tx = agent_transcript(streams, clock)
    await tx.interrupted("t1", heard_ms=0.0)
    await tx.on_text("never heard", final=True, turn_id="t1")
    await tx.finish(interrupted=False)
    assert streams.streams == []
