"""A quick check that a LiveKit server answers at LIVEKIT_URL, before the worker starts.

livekit-agents retries a dead URL for minutes with little more than a warning per attempt;
this says plainly what is wrong and how to fix it, in a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from dataclasses import dataclass
from urllib.parse import urlparse

DEFAULT_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    tls: bool


def target_of(url: str) -> Target:
    parsed = urlparse(url)
    tls = parsed.scheme in ("wss", "https")
    if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.hostname:
        raise ValueError(f"not a LiveKit URL: {url!r} (expected ws://host:port or wss://host)")
    return Target(parsed.hostname, parsed.port or (443 if tls else 80), tls)


async def check_server(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """None when something accepts connections at `url` (and, for plain http, answers an HTTP
    request); else a message saying what failed and how to start a server."""
    try:
        target = target_of(url)
    except ValueError as exc:
        return str(exc)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=target.tls or None),
            timeout_s,
        )
    except TimeoutError:
        return _no_server(url, f"no answer within {timeout_s:g} s")
    except ConnectionRefusedError:
        return _no_server(url, "connection refused")
    except socket.gaierror:
        return _no_server(url, f"cannot resolve host {target.host!r}")
    except OSError as exc:
        return _no_server(url, exc.strerror or str(exc))
    try:
        if not target.tls:
            # livekit-server answers GET / with 200 "OK": anything HTTP-shaped will do.
            request = f"GET / HTTP/1.1\r\nHost: {target.host}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout_s)
            if not line.startswith(b"HTTP/"):
                return (
                    f"something listens at {url} but does not speak HTTP; is LIVEKIT_URL"
                    " pointing at the LiveKit server's signalling port (7880 by default)?"
                )
    except (TimeoutError, OSError) as exc:
        return _no_server(url, f"connection accepted but no HTTP answer ({exc or 'timeout'})")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return None


def _no_server(url: str, why: str) -> str:
    return (
        f"No LiveKit server answers at {url} ({why}).\n"
        "Start one locally:\n"
        "  install:  brew install livekit   (macOS)\n"
        "            curl -sSL https://get.livekit.io | bash   (Linux)\n"
        "  run:      livekit-server --dev   (or: livekit-server --config livekit.yaml)\n"
        "or point LIVEKIT_URL (with LIVEKIT_API_KEY / LIVEKIT_API_SECRET) at your server or"
        " LiveKit Cloud project."
    )


def server_answers(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Run the check; on failure print the message to stderr."""
    problem = asyncio.run(check_server(url, timeout_s=timeout_s))
    if problem is not None:
        print(problem, file=sys.stderr)
    return problem is None
