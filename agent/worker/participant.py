"""Which remote participant the agent talks to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from livekit import rtc

# People: browser/mobile users, phone callers and connector bridges (the kinds livekit-agents
# treats as users). Agents, egress, ingress and bridges are never talked to.
USER_KINDS: frozenset[int] = frozenset(
    {
        rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
        rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
    }
)


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote participant as the worker sees it."""

    identity: str
    kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD

    @property
    def is_user(self) -> bool:
        return self.kind in USER_KINDS


def choose_participant(peers: Iterable[Peer], identity: str | None = None) -> Peer | None:
    """The participant named `identity` (whatever its kind: the dispatcher asked for it),
    else the first user participant in join order; None if there is none yet."""
    for peer in peers:
        if identity is not None:
            if peer.identity == identity:
                return peer
        elif peer.is_user:
            return peer
    return None


def matches(peer: Peer, identity: str | None) -> bool:
    """Whether `peer` can be the conversation's participant."""
    return peer.identity == identity if identity is not None else peer.is_user
