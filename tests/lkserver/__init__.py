"""A small LiveKit-compatible server for end-to-end tests (never shipped).

Signaling (/rtc, two peer connections via aiortc), the agent worker protocol (/agent),
the Twirp dispatch/room endpoints and /debug/state. Run it in its own process:
`python -m tests.lkserver --host 10.200.0.1 --port 7880`.
"""

from .server import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
