"""`token`: an access token for joining a room from a browser (agents playground, Meet)."""

from __future__ import annotations

import warnings
from datetime import timedelta
from urllib.parse import urlencode

from livekit import api

from .metadata import parse_metadata
from .settings import Settings


def make_token(
    settings: Settings,
    *,
    room: str,
    identity: str,
    name: str | None = None,
    ttl: timedelta = timedelta(hours=6),
    agent_name: str | None = None,
    metadata: str | None = None,
) -> str:
    """A join token for `room`. With `agent_name`, the token asks LiveKit to dispatch that
    agent (explicit dispatch) with `metadata` when the participant joins."""
    if metadata:
        parse_metadata(metadata)  # the worker's own checks: MetadataError if it would refuse
    token = (
        api.AccessToken(settings.api_key, settings.api_secret)
        .with_identity(identity)
        .with_name(name or identity)
        .with_ttl(ttl)
        .with_grants(api.VideoGrants(room_join=True, room=room))
    )
    if agent_name:
        dispatch = api.RoomAgentDispatch(agent_name=agent_name, metadata=metadata or "")
        token = token.with_room_config(api.RoomConfiguration(agents=[dispatch]))
    with warnings.catch_warnings():
        # PyJWT warns about the short development secret ("secret"); it is deliberate there.
        warnings.simplefilter("ignore")
        return token.to_jwt()


def meet_link(settings: Settings, token: str) -> str:
    """A LiveKit Meet link that joins with `token` (custom server)."""
    query = urlencode({"liveKitUrl": settings.livekit_url, "token": token})
    return f"https://meet.livekit.io/custom?{query}"
