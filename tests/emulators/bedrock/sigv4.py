"""Server-side SigV4 verification: the request's Authorization header and the event chain.

Written from the published algorithm ("Signature Version 4 signing process" and "Signing
event streams"): the canonical URI encodes each path segment once more (so `%3A` on the wire
becomes `%253A`), the payload hash is the `x-amz-content-sha256` header value
(`STREAMING-AWS4-HMAC-SHA256-EVENTS`), and every client event message is wrapped in an outer
message whose `:chunk-signature` chains from the previous signature (the first one chains
from the Authorization header's signature).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from .eventstream import Header

ALGORITHM = "AWS4-HMAC-SHA256"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


class SignatureError(Exception):
    """Why a request or event was refused; `error_type` is the service's error code."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


BAD_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    k_date = _hmac(("AWS4" + secret_key).encode("utf-8"), day)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, "aws4_request")


def uri_encode(value: str, *, keep_slash: bool) -> str:
    # RFC 3986 unreserved characters stay; everything else is %XX with upper-case hex.
    return quote(value, safe="/-_.~" if keep_slash else "-_.~")


def canonical_uri(raw_path: str) -> str:
    """Canonical URI for non-S3 services: the on-the-wire path encoded once more."""
    if not raw_path:
        return "/"
    return "/".join(uri_encode(segment, keep_slash=False) for segment in raw_path.split("/"))


def canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append(
            (
                uri_encode(unquote(name), keep_slash=False),
                uri_encode(unquote(value), keep_slash=False),
            )
        )
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def _trim(value: str) -> str:
    return " ".join(value.strip().split())


@dataclass(frozen=True)
class Authorization:
    access_key: str
    day: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.day}/{self.region}/{self.service}/aws4_request"


def parse_authorization(value: str) -> Authorization:
    match = _AUTH_RE.match(value.strip())
    if match is None:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.",
        )
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError(
            "IncompleteSignatureException",
            f"Credential should have 5 parts: {match['credential']!r} is malformed.",
        )
    signed = tuple(match["signed"].split(";"))
    return Authorization(
        access_key=parts[0],
        day=parts[1],
        region=parts[2],
        service=parts[3],
        signed_headers=signed,
        signature=match["signature"],
    )


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None


def verify_request(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime.datetime | None = None,
) -> Authorization:
    """Check a request's SigV4 Authorization header; return it, or raise SignatureError.

    `headers` must have lower-case names; `host` falls back to HTTP/2's `:authority`.
    """
    raw_auth = headers.get("authorization")
    if raw_auth is None:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    auth = parse_authorization(raw_auth)
    if auth.access_key != credentials.access_key:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    token = headers.get("x-amz-security-token")
    if token is not None and token != credentials.session_token:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if credentials.session_token is not None and token is None:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if auth.service != service:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
        )
    if auth.region != region:
        raise SignatureError(
            "InvalidSignatureException", "Credential should be scoped to a valid region."
        )
    amz_date = headers.get("x-amz-date")
    if amz_date is None:
        raise SignatureError(
            "IncompleteSignatureException", "Authorization requires an X-Amz-Date header."
        )
    try:
        signed_at = datetime.datetime.strptime(amz_date, TIMESTAMP_FORMAT).replace(
            tzinfo=datetime.UTC
        )
    except ValueError as exc:
        raise SignatureError("IncompleteSignatureException", "Invalid X-Amz-Date.") from exc
    current = now or datetime.datetime.now(datetime.UTC)
    if abs(current - signed_at) > MAX_CLOCK_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than "
            f"{(current - MAX_CLOCK_SKEW).strftime(TIMESTAMP_FORMAT)}.",
        )
    if amz_date[:8] != auth.day:
        raise SignatureError(
            "InvalidSignatureException", "Date in Credential scope does not match X-Amz-Date."
        )
    for required in ("host", "x-amz-date"):
        if required not in auth.signed_headers:
            raise SignatureError(
                "InvalidSignatureException",
                f"'{required}' must be a 'SignedHeader' in the AWS Authorization.",
            )

    raw_path, _, raw_query = path.partition("?")
    lines: list[str] = []
    for name in auth.signed_headers:
        value = headers.get(name)
        if value is None and name == "host":
            value = headers.get(":authority")
        if value is None:
            raise SignatureError("InvalidSignatureException", BAD_SIGNATURE_MESSAGE)
        lines.append(f"{name}:{_trim(value)}\n")
    payload_hash = headers.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest())
    canonical_request = "\n".join(
        [
            method,
            canonical_uri(raw_path),
            canonical_query(raw_query),
            "".join(lines),
            ";".join(auth.signed_headers),
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            amz_date,
            auth.scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )
    key = signing_key(credentials.secret_key, auth.day, region, service)
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureError("InvalidSignatureException", BAD_SIGNATURE_MESSAGE)
    return auth


class ChunkSignatureChain:
    """Verifies `:chunk-signature` of each outer event message in order."""

    def __init__(self, *, secret_key: str, region: str, service: str, seed_signature: str) -> None:
        self._secret_key = secret_key
        self._region = region
        self._service = service
        self._previous = seed_signature
        self._keys: dict[str, bytes] = {}
        self.verified = 0

    def _key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = signing_key(self._secret_key, day, self._region, self._service)
            self._keys = {day: key}
        return key

    def verify(self, date_ms: int, signature: bytes, payload: bytes) -> None:
        """Check one outer message (its `:date` header value, signature, payload)."""
        signed_at = datetime.datetime.fromtimestamp(date_ms / 1000, datetime.UTC)
        now = datetime.datetime.now(datetime.UTC)
        if abs(now - signed_at) > MAX_CLOCK_SKEW:
            raise SignatureError("InvalidSignatureException", "Event signature expired.")
        timestamp = signed_at.strftime(TIMESTAMP_FORMAT)
        day = timestamp[:8]
        encoded_date = Header.timestamp_ms(":date", date_ms).encode()
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                timestamp,
                f"{day}/{self._region}/{self._service}/aws4_request",
                self._previous,
                hashlib.sha256(encoded_date).hexdigest(),
                hashlib.sha256(payload).hexdigest(),
            ]
        )
        expected = hmac.new(self._key(day), string_to_sign.encode("utf-8"), hashlib.sha256)
        if not hmac.compare_digest(expected.digest(), signature):
            raise SignatureError("InvalidSignatureException", BAD_SIGNATURE_MESSAGE)
        self._previous = expected.hexdigest()
        self.verified += 1
