"""Run the Bedrock emulator as its own process.

    python -m tests.emulators.bedrock --port 8443 --host 10.200.0.1 --ca-dir /tmp/ca \
        [--scenario JSON|FILE] [--faults JSON|FILE] [--lifetime 600]

Prints one JSON line when ready: {"url", "ca_file", "host", "port", "region",
"access_key", "pid"}; clients must set SSL_CERT_FILE to ca_file. The secret key is the
exported SECRET_KEY constant (never printed). Stops on SIGTERM/SIGINT, when stdin closes
(with --exit-on-stdin-eof), or after --lifetime seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from ..tls import make_local_ca
from .emulator import ACCESS_KEY, REGION, BedrockEmulator
from .scenario import Faults, Scenario, load_json_arg


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.bedrock")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = an ephemeral port")
    parser.add_argument("--ca-dir", type=Path, required=True, help="where the test CA is written")
    parser.add_argument("--scenario", help="Scenario as inline JSON or a JSON file path")
    parser.add_argument("--faults", help="Faults as inline JSON or a JSON file path")
    parser.add_argument("--lifetime", type=float, default=600.0, help="seconds before exiting")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument(
        "--quick-ack", action="store_true", help="ACK every read at once (no delayed ACK)"
    )
    parser.add_argument(
        "--no-keep-audio",
        action="store_true",
        help="do not keep received audio in the records (long load runs)",
    )
    return parser.parse_args(argv)


async def _wait_stdin_eof() -> None:
    # A pipe reader on the loop (not a thread) so that cancelling it leaves nothing behind.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()


async def _main(args: argparse.Namespace) -> None:
    scenario = Scenario.from_json(load_json_arg(args.scenario)) if args.scenario else Scenario()
    faults = Faults.from_json(load_json_arg(args.faults)) if args.faults else Faults()
    hosts = list(dict.fromkeys([args.host, "127.0.0.1", "localhost"]))
    ca = make_local_ca(args.ca_dir, hosts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with BedrockEmulator(
        scenario=scenario,
        faults=faults,
        tls=ca,
        host=args.host,
        port=args.port,
        keep_audio=not args.no_keep_audio,
        quick_ack=args.quick_ack,
    ) as emu:
        ready = {
            "url": emu.url,
            "ca_file": str(emu.ca_file),
            "host": args.host,
            "port": emu.port,
            "region": REGION,
            "access_key": ACCESS_KEY,
            "pid": os.getpid(),
        }
        print(json.dumps(ready), flush=True)
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait())]
        if args.exit_on_stdin_eof:
            waiters.append(asyncio.ensure_future(_wait_stdin_eof()))
        try:
            await asyncio.wait(waiters, timeout=args.lifetime, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waiters, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_main(_parse(argv)))


if __name__ == "__main__":
    main()
