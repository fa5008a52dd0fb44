"""Access tokens: verify what clients present, mint what agents join with."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field

import jwt
from aiohttp import web
from livekit import api
from livekit.protocol import models


def bearer_token(request: web.Request) -> str:
    """`Authorization: Bearer …`, or the `access_token` query parameter older SDKs use."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("access_token", "")


class AuthError(Exception):
    """The token is missing, malformed, expired, signed with another key or lacks a grant."""


@dataclass(frozen=True, slots=True)
class AgentRequest:
    """One agent a token asks to dispatch into the room it creates (roomConfig.agents)."""

    agent_name: str
    metadata: str


@dataclass(frozen=True, slots=True)
class Grants:
    identity: str
    name: str
    kind: str
    metadata: str
    attributes: dict[str, str]
    room: str
    room_join: bool
    room_admin: bool
    room_create: bool
    room_list: bool
    agent: bool
    can_publish: bool
    can_subscribe: bool
    can_publish_data: bool
    hidden: bool
    agents: tuple[AgentRequest, ...] = field(default_factory=tuple)

    @property
    def participant_kind(self) -> models.ParticipantInfo.Kind:
        kinds = {
            "agent": models.ParticipantInfo.Kind.AGENT,
            "sip": models.ParticipantInfo.Kind.SIP,
            "egress": models.ParticipantInfo.Kind.EGRESS,
            "ingress": models.ParticipantInfo.Kind.INGRESS,
        }
        return kinds.get(self.kind, models.ParticipantInfo.Kind.STANDARD)

    def permission(self) -> models.ParticipantPermission:
        return models.ParticipantPermission(
            can_subscribe=self.can_subscribe,
            can_publish=self.can_publish,
            can_publish_data=self.can_publish_data,
            can_update_metadata=True,
            hidden=self.hidden,
            agent=self.agent,
        )


class KeyRing:
    """API key → secret. The secrets never leave this object (no repr)."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = dict(keys)

    def __repr__(self) -> str:
        return f"KeyRing(keys={sorted(self._keys)})"

    def first(self) -> tuple[str, str]:
        key = next(iter(self._keys))
        return key, self._keys[key]

    def verify(self, token: str) -> Grants:
        if not token:
            raise AuthError("no access token")
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss", "")
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {type(exc).__name__}") from None
        secret = self._keys.get(issuer) if isinstance(issuer, str) else None
        if secret is None:
            raise AuthError("unknown API key")
        try:
            claims = api.TokenVerifier(issuer, secret).verify(token)
        except (jwt.PyJWTError, ValueError) as exc:
            # The exception text may echo claims; only its type is reported.
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        video = claims.video or api.VideoGrants()
        agents: tuple[AgentRequest, ...] = ()
        if claims.room_config is not None:
            agents = tuple(
                AgentRequest(agent_name=a.agent_name, metadata=a.metadata)
                for a in claims.room_config.agents
            )
        return Grants(
            identity=claims.identity,
            name=claims.name,
            kind=claims.kind,
            metadata=claims.metadata,
            attributes=dict(claims.attributes or {}),
            room=video.room,
            room_join=bool(video.room_join),
            room_admin=bool(video.room_admin),
            room_create=bool(video.room_create),
            room_list=bool(video.room_list),
            agent=bool(video.agent),
            can_publish=video.can_publish is not False,
            can_subscribe=video.can_subscribe is not False,
            can_publish_data=video.can_publish_data is not False,
            hidden=bool(video.hidden),
            agents=agents,
        )

    def agent_token(
        self,
        *,
        room: str,
        identity: str,
        name: str,
        metadata: str,
        attributes: Mapping[str, str],
        permission: models.ParticipantPermission,
    ) -> str:
        """The token a dispatched agent joins its room with (as the real server mints it)."""
        key, secret = self.first()
        grants = api.VideoGrants(
            room_join=True,
            room=room,
            agent=True,
            can_publish=permission.can_publish,
            can_subscribe=permission.can_subscribe,
            can_publish_data=permission.can_publish_data,
            can_update_own_metadata=True,
            hidden=permission.hidden or None,
        )
        return (
            api.AccessToken(key, secret)
            .with_identity(identity)
            .with_name(name)
            .with_kind("agent")
            .with_metadata(metadata)
            .with_attributes(dict(attributes))
            .with_grants(grants)
            .with_ttl(datetime.timedelta(hours=1))
            .to_jwt()
        )
