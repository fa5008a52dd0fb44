"""Telling job processes that the worker is draining.

livekit-agents job processes ignore SIGTERM/SIGINT and learn about shutdown only after their
entrypoint returns, so they can't finish the current turn on their own. The worker creates a
flag file before any job process starts (its path travels in the environment) and touches it
when it drains or closes; each conversation watches for it, lets the current turn finish and
ends cleanly. A file works for process and thread executors, spawn and forkserver alike.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

ENV_DRAIN_FLAG = "S2S_DRAIN_FLAG"
POLL_S = 0.25


class DrainFlag:
    """Owned by the worker process: created before the worker runs, removed after."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="s2s-worker-"))
        self.path = self._dir / "draining"

    def export(self) -> None:
        """Publish the path to job processes started from now on."""
        os.environ[ENV_DRAIN_FLAG] = str(self.path)

    def set(self) -> None:
        self.path.touch(exist_ok=True)

    @property
    def is_set(self) -> bool:
        return self.path.exists()

    def cleanup(self) -> None:
        if os.environ.get(ENV_DRAIN_FLAG) == str(self.path):
            del os.environ[ENV_DRAIN_FLAG]
        shutil.rmtree(self._dir, ignore_errors=True)


def flag_path_from_env() -> Path | None:
    raw = os.environ.get(ENV_DRAIN_FLAG)
    return Path(raw) if raw else None


async def wait_for_drain(path: Path | None, *, poll_s: float = POLL_S) -> None:
    """Return once the worker drains; never returns when there is no flag to watch."""
    if path is None:
        await asyncio.Event().wait()
        return
    flag = str(path)
    # Polling a file is the point here (see the module docstring); a stat is microseconds.
    while not os.path.exists(flag):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(poll_s)
