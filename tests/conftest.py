"""Suite-wide test set-up. Area fixtures live in each area's own conftest.py."""

from __future__ import annotations

import logging


def pytest_configure() -> None:
    # Keep third-party chatter out of failure output; our own loggers stay at DEBUG for caplog.
    for name in ("aiortc", "aioice", "hpack", "h2", "websockets", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
