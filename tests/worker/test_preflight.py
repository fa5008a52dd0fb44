from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from agent.worker.preflight import check_server, target_of


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def tcp_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def test_targets() -> None:
    assert target_of("ws://localhost:7880") == target_of("http://localhost:7880")
    assert target_of("wss://x.livekit.cloud").port == 443
    assert target_of("wss://x.livekit.cloud").tls
    with pytest.raises(ValueError):
        target_of("localhost:7880")


async def test_nothing_listening_says_how_to_start_a_server() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    message = await check_server(url, timeout_s=1)
    assert message is not None
    assert f"No LiveKit server answers at {url} (connection refused)" in message
    assert "livekit-server --dev" in message
    assert "brew install livekit" in message
    assert "curl -sSL https://get.livekit.io | bash" in message


async def test_an_http_server_passes() -> None:
    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        await writer.drain()
        writer.close()

    async with tcp_server(ok) as port:
        assert await check_server(f"ws://127.0.0.1:{port}", timeout_s=2) is None


async def test_something_that_is_not_http_is_reported() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        await writer.drain()
        writer.close()

    async with tcp_server(garbage) as port:
        message = await check_server(f"ws://127.0.0.1:{port}", timeout_s=2)
    assert message is not None and "does not speak HTTP" in message


async def test_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.6)
        writer.close()

    async with tcp_server(silent) as port:
        message = await check_server(f"ws://127.0.0.1:{port}", timeout_s=0.3)
    assert message is not None and "no HTTP answer" in message


@pytest.mark.parametrize("command", ["dev", "start", "connect --room r1"])
def test_cli_exits_non_zero_with_the_message(command: str) -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "agent", *command.split()],
        env={"LIVEKIT_URL": f"ws://127.0.0.1:{port}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert f"No LiveKit server answers at ws://127.0.0.1:{port}" in proc.stderr
    assert "livekit-server --dev" in proc.stderr
