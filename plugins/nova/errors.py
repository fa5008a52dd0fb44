"""Which stream failures a reconnect can fix, and the message to show for each."""

from __future__ import annotations

from dataclasses import dataclass

from aws_sdk_bedrock_runtime.models import (
    AccessDeniedException,
    InternalServerException,
    ModelErrorException,
    ModelNotReadyException,
    ModelStreamErrorException,
    ModelTimeoutException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    ServiceUnavailableException,
    ThrottlingException,
    ValidationException,
)
from awscrt.exceptions import AwsCrtError
from smithy_aws_event_stream.exceptions import EventError
from smithy_core.exceptions import (
    CallError,
    DiscriminatorError,
    SmithyError,
    SmithyIdentityError,
)

from agent.s2s import ConfigError, S2SError

# Validation messages that are really transient service conditions.
_TRANSIENT_VALIDATION = (
    "system instability",
    "rst_stream",
    "internalerrorcode=531",
    "tool response parsing error",
    "timed out",
    "please retry",
)


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    message: str
    retryable: bool
    throttled: bool = False


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None)
    if not isinstance(text, str) or not text:
        text = str(exc)
    return text.strip() or type(exc).__name__


def _walk(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def classify(exc: BaseException | None) -> Failure:
    """Sort a stream's end (None = it just ended) into retryable or final."""
    if exc is None:
        return Failure("stream_ended", "the Nova stream ended unexpectedly", True)
    for err in _walk(exc):
        failure = _classify_one(err)
        if failure is not None:
            return failure
    return Failure("internal", f"{type(exc).__name__}: {_message(exc)}", False)


def _classify_one(exc: BaseException) -> Failure | None:
    msg = _message(exc)
    match exc:
        case S2SError():
            retry = exc.recoverable and not isinstance(exc, ConfigError)
            return Failure(exc.code, exc.message, retry)
        case ModelTimeoutException():
            return Failure("model_timeout", msg, True)
        case ThrottlingException() | ModelNotReadyException():
            return Failure("throttled", msg, True, throttled=True)
        case ServiceQuotaExceededException():
            return Failure("quota_exceeded", msg, False)
        case (
            InternalServerException()
            | ServiceUnavailableException()
            | ModelStreamErrorException()
            | ModelErrorException()
        ):
            return Failure("service_error", msg, True)
        case ValidationException():
            transient = any(t in msg.lower() for t in _TRANSIENT_VALIDATION)
            return Failure("validation" if not transient else "service_error", msg, transient)
        case AccessDeniedException():
            return Failure("access_denied", msg, False)
        case ResourceNotFoundException():
            return Failure("not_found", msg, False)
        case SmithyIdentityError():
            return Failure("credentials", msg, False)
        case EventError():
            return Failure("bad_frame", f"{type(exc).__name__}: {msg}", True)
        case CallError():
            server = exc.fault == "server" or bool(exc.is_retry_safe)
            code = "service_error" if server else "rejected"
            return Failure(code, msg, server, throttled=exc.is_throttling_error)
        case AwsCrtError() | OSError() | ConnectionError() | TimeoutError():
            return Failure("connection", f"{type(exc).__name__}: {msg}", True)
        case DiscriminatorError():
            return Failure("http_error", f"unrecognised error response: {msg}", True)
        case SmithyError():
            return None  # look at its cause
    return None
