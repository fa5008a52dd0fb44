from __future__ import annotations

from livekit import rtc

from agent.worker.participant import Peer, choose_participant, matches

K = rtc.ParticipantKind
AGENT = Peer("other-agent", K.PARTICIPANT_KIND_AGENT)
EGRESS = Peer("recorder", K.PARTICIPANT_KIND_EGRESS)
ALICE = Peer("alice", K.PARTICIPANT_KIND_STANDARD)
BOB = Peer("bob", K.PARTICIPANT_KIND_STANDARD)
PHONE = Peer("sip_+15550100", K.PARTICIPANT_KIND_SIP)


def test_first_user_in_join_order_skipping_agents_and_egress() -> None:
    assert choose_participant([AGENT, EGRESS, ALICE, BOB]) == ALICE
    assert choose_participant([BOB, ALICE]) == BOB


def test_phone_callers_count_as_users() -> None:
    assert choose_participant([AGENT, PHONE]) == PHONE


def test_no_user_yet() -> None:
    assert choose_participant([]) is None
    assert choose_participant([AGENT, EGRESS]) is None


def test_named_participant_wins_and_is_waited_for() -> None:
    assert choose_participant([ALICE, BOB], "bob") == BOB
    assert choose_participant([ALICE], "bob") is None
    # Named explicitly, even another agent may be the counterpart (agent-to-agent tests).
    assert choose_participant([ALICE, AGENT], "other-agent") == AGENT


def test_matches() -> None:
    assert matches(ALICE, None) and not matches(AGENT, None)
    assert matches(BOB, "bob") and not matches(ALICE, "bob")
