"""Fixtures for the worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.worker.settings import Settings

WORKER_DIR = Path(__file__).parent
TEST_TIMEOUT_S = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if WORKER_DIR in Path(str(item.fspath)).parents and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


@pytest.fixture
def settings() -> Settings:
    """Worker settings with short timings for tests."""
    return Settings(
        provider="scripted",
        participant_grace_s=0.5,
        drain_timeout_s=5,
        output_queue_ms=100,
        tool_timeout_s=2.0,
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No worker variables from the outer environment."""
    import os

    for name in list(os.environ):
        if name.startswith(("S2S_", "LIVEKIT_")) or name in ("AGENT_NAME",):
            monkeypatch.delenv(name, raising=False)
    yield monkeypatch
