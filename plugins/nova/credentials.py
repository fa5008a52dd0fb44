"""AWS credentials: explicit keys or the standard chain, never printed.

The SDK's own chain (smithy-aws-core's IdentityChain) covers environment variables and the
shared config/credentials files (static keys, session keys, credential_process). Container
(ECS/EKS) and instance (IMDS) roles ship as separate resolvers, so the chain here appends
them. The resolved identity is cached until shortly before it expires: the SDK asks for it
on every signed event (every audio frame).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from smithy_aws_core.identity import (
    AWSCredentialsIdentity,
    ContainerCredentialsResolver,
    IdentityChain,
    IMDSCredentialsResolver,
    StaticCredentialsResolver,
)
from smithy_core.aio.interfaces.identity import IdentityResolver
from smithy_core.exceptions import SmithyIdentityError

log = logging.getLogger(__name__)

_REFRESH_BEFORE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class StaticKeys:
    """Keys given in code (Config.extra). Only the access key id shows in reprs."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        shown = self.access_key_id[:4] + "…" if self.access_key_id else "''"
        return f"StaticKeys(access_key_id={shown}, secret=***)"

    def identity(self) -> AWSCredentialsIdentity:
        return AWSCredentialsIdentity(
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            session_token=self.session_token,
        )


type CredentialsResolver = IdentityResolver[AWSCredentialsIdentity, Any]


class CredentialChain:
    """Standard chain + container role + instance role, with a cached identity."""

    def __init__(self, *, region: str, profile: str | None, http_client: Any) -> None:
        self._region = region
        self._profile = profile
        self._http_client = http_client
        self._resolvers: list[CredentialsResolver] | None = None
        self._cached: AWSCredentialsIdentity | None = None

    def __repr__(self) -> str:
        return f"CredentialChain(region={self._region!r}, profile={self._profile!r})"

    async def _build(self) -> list[CredentialsResolver]:
        standard = await IdentityChain.create(
            AWSCredentialsIdentity,
            profile_name=self._profile,
            region_override=self._region,
            http_client=self._http_client,
        )
        resolvers: list[CredentialsResolver] = [standard]
        with warnings.catch_warnings():
            # These resolvers are marked deprecated in favour of packages not yet on PyPI
            # for this SDK version; they are the ones smithy-aws-core ships today.
            warnings.simplefilter("ignore", DeprecationWarning)
            if os.environ.get(ContainerCredentialsResolver.ENV_VAR) or os.environ.get(
                ContainerCredentialsResolver.ENV_VAR_FULL
            ):
                resolvers.append(ContainerCredentialsResolver(self._http_client))
            if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
                resolvers.append(IMDSCredentialsResolver(self._http_client))
        return resolvers

    async def get_identity(self, *, properties: Mapping[str, Any]) -> AWSCredentialsIdentity:
        cached = self._cached
        if cached is not None and not _expiring(cached):
            return cached
        if self._resolvers is None:
            self._resolvers = await self._build()
        failures: list[str] = []
        for resolver in self._resolvers:
            try:
                identity = await resolver.get_identity(properties=properties)  # type: ignore[arg-type]
            except SmithyIdentityError as exc:
                failures.append(f"{type(resolver).__name__}: {_first_line(exc)}")
                continue
            self._cached = identity
            log.debug("AWS credentials resolved by %s", type(resolver).__name__)
            return identity
        raise SmithyIdentityError(
            "no AWS credentials found (tried environment, shared config/credentials files,"
            " container role, instance role): " + "; ".join(failures)
        )

    async def invalidate(self) -> None:
        self._cached = None
        for resolver in self._resolvers or ():
            await resolver.invalidate()


def _expiring(identity: AWSCredentialsIdentity) -> bool:
    expiration = identity.expiration
    if expiration is None:
        return False
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    return datetime.now(UTC) >= expiration - _REFRESH_BEFORE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def make_resolver(
    *, keys: StaticKeys | None, region: str, profile: str | None, http_client: Any
) -> CredentialsResolver:
    """Explicit keys if given, else the standard chain."""
    if keys is not None:
        return StaticCredentialsResolver(identity=keys.identity())
    return CredentialChain(region=region, profile=profile, http_client=http_client)
