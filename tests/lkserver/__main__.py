"""Run the test server in its own process.

    python -m tests.lkserver --host 10.200.0.1 --port 7880

Prints one JSON line {"ready": true, "url": ..., "http_url": ..., "pid": ...} once it
listens; stops on SIGTERM/SIGINT or when its parent process goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import warnings

import jwt.warnings

from .server import Server, ServerConfig


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lkserver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="10.200.0.1", help="address to listen and gather ICE on")
    parser.add_argument("--port", type=int, default=7880, help="0 picks a free port")
    parser.add_argument("--api-key", default="devkey")
    parser.add_argument(
        "--api-secret-env",
        default="",
        help="name of an environment variable holding the API secret (default: the dev secret)",
    )
    parser.add_argument("--departure-timeout", type=float, default=1.0)
    parser.add_argument("--empty-timeout", type=float, default=30.0)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def _watch_parent(stop: asyncio.Event) -> None:
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
            return
        await asyncio.sleep(0.5)


async def _main(args: argparse.Namespace) -> None:
    secret = os.environ.get(args.api_secret_env, "") if args.api_secret_env else "secret"
    config = ServerConfig(
        host=args.host,
        port=args.port,
        keys={args.api_key: secret},
        departure_timeout=args.departure_timeout,
        empty_timeout=args.empty_timeout,
    )
    server = Server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = {
        "ready": True,
        "url": server.url,
        "http_url": server.url.replace("ws://", "http://", 1),
        "pid": os.getpid(),
    }
    print(json.dumps(ready), flush=True)
    watcher = asyncio.create_task(_watch_parent(stop))
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    # The dev secret is short by design (as `livekit-server --dev`).
    warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d lkserver %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
