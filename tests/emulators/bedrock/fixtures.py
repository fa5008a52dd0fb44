"""pytest fixtures; import them into a conftest.py:

    from tests.emulators.bedrock.fixtures import bedrock_emulator, test_ca  # noqa: F401

`test_ca` is session-scoped and points SSL_CERT_FILE at its CA for the whole session, so
any AWSCRTHTTPClient built during the session trusts the emulators (build the transport
after the fixture ran: the CRT reads SSL_CERT_FILE when the client creates its TLS context).
Other emulators (OpenAI, Gemini) should serve certificates from this same CA
(`test_ca.server_context()`), since one process has one SSL_CERT_FILE.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, Protocol

import pytest

from ..tls import LocalCA, make_local_ca
from .emulator import BedrockEmulator
from .scenario import Faults, Scenario


class BedrockEmulatorFactory(Protocol):
    def __call__(
        self, scenario: Scenario | None = None, faults: Faults | None = None, **kwargs: Any
    ) -> Awaitable[BedrockEmulator]: ...


# One CA per process: several conftests may import `test_ca`, and each import is its own
# fixture definition; they must not point SSL_CERT_FILE at different CAs.
_SESSION_CA: list[LocalCA] = []


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCA]:
    if not _SESSION_CA:
        _SESSION_CA.append(make_local_ca(tmp_path_factory.mktemp("test-ca")))
    ca = _SESSION_CA[0]
    previous = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(ca.ca_file)
    try:
        yield ca
    finally:
        if os.environ.get("SSL_CERT_FILE") == str(ca.ca_file) and previous != str(ca.ca_file):
            if previous is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = previous


@pytest.fixture
async def bedrock_emulator(test_ca: LocalCA) -> AsyncIterator[BedrockEmulatorFactory]:
    """Factory: `emu = await bedrock_emulator(scenario=..., faults=...)`; stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            scenario: Scenario | None = None, faults: Faults | None = None, **kwargs: Any
        ) -> BedrockEmulator:
            emulator = BedrockEmulator(scenario=scenario, faults=faults, tls=test_ca, **kwargs)
            return await stack.enter_async_context(emulator)

        yield make
