from __future__ import annotations

import asyncio

from agent.worker.state import StatePublisher


async def test_latest_state_wins_and_duplicates_are_dropped() -> None:
    sent: list[dict[str, str]] = []
    gate = asyncio.Event()

    async def set_attributes(attrs: dict[str, str]) -> None:
        sent.append(attrs)
        await gate.wait()

    publisher = StatePublisher(set_attributes)
    task = asyncio.create_task(publisher.run())
    try:
        publisher.set("initializing")
        await asyncio.sleep(0.01)  # "initializing" is being sent (blocked on the gate)
        for state in ("listening", "thinking", "speaking"):
            publisher.set(state)  # these arrive while the room is slow...
        gate.set()
        await asyncio.sleep(0.01)
        publisher.set("speaking")  # ...and a repeat of the current one
        await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sent == [{"lk.agent.state": "initializing"}, {"lk.agent.state": "speaking"}]
    assert publisher.history == ["initializing", "speaking"]
    assert publisher.published == "speaking"


async def test_a_failed_update_is_retried_by_the_next_flush() -> None:
    calls = 0

    async def flaky(attrs: dict[str, str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("not connected")

    publisher = StatePublisher(flaky)
    publisher.set("listening")
    await publisher.flush()
    assert publisher.published is None
    await publisher.flush()
    assert publisher.published == "listening"
