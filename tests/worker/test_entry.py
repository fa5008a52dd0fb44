"""The job entrypoint's own decisions (the room part runs in the e2e tier)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from livekit.protocol import agent, models

from agent.worker.entry import entrypoint
from agent.worker.settings import Settings


class FakeJobContext:
    def __init__(self, metadata: str) -> None:
        self.proc = SimpleNamespace(userdata={"settings": Settings(provider="nova")})
        self.job = agent.Job(id="AJ_9", room=models.Room(name="lobby"), metadata=metadata)
        self.shutdowns: list[str] = []
        self.connected = False

    async def connect(self, **_: Any) -> None:
        self.connected = True

    def shutdown(self, reason: str = "") -> None:
        self.shutdowns.append(reason)


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ("{broken", "not valid JSON"),
        ('{"provider": "nosuch"}', "unknown provider 'nosuch'"),
        ('{"voice": ["a"]}', "'voice' must be a string"),
    ],
)
async def test_bad_metadata_ends_the_job_without_joining(
    metadata: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = FakeJobContext(metadata)
    with caplog.at_level(logging.ERROR, logger="agent.worker.entry"):
        await entrypoint(ctx)  # type: ignore[arg-type]
    assert not ctx.connected
    (reason,) = ctx.shutdowns
    assert reason.startswith("invalid job metadata") and why in reason
    assert "job AJ_9 in room 'lobby' not started" in caplog.text
