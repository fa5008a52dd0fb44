"""Errors raised by the S2S API and carried in ERROR events."""

from __future__ import annotations


class S2SError(Exception):
    """Base error. `code` is a short machine-readable reason; `recoverable` says whether the
    session carries on (a reconnect happened or is under way) or has ended."""

    def __init__(self, message: str, *, code: str = "error", recoverable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.recoverable = recoverable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, recoverable={self.recoverable},"
            f" {self.message!r})"
        )


class ConfigError(S2SError, ValueError):
    """Bad configuration (unknown voice or model, bad option). Raised before any network I/O."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="config")


class SessionClosedError(S2SError):
    """An operation on a session that has been closed (by the caller or after a fatal error)."""

    def __init__(self, message: str = "session is closed") -> None:
        super().__init__(message, code="closed")


class ProviderError(S2SError):
    """The provider reported an error (modelled exception, HTTP error, protocol violation)."""
