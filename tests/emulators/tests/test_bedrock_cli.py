"""The emulator as its own process (how the end-to-end tests run it)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.emulators.bedrock import ACCESS_KEY, REGION
from tests.emulators.bedrock.sdk import make_client

from .nova_client import BidiStream, audio_start, closing, opening, text_block

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[3]


async def test_cli_serves_a_scripted_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = {
        "turns": [
            {"user_text": "typed", "reply_text": "Hello from the CLI", "reply_audio_ms": 200}
        ],
        "reply_pace": 0,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.emulators.bedrock",
        "--host",
        "127.0.0.2",  # not the default: the certificate must name it
        "--port",
        "0",
        "--ca-dir",
        str(tmp_path / "ca"),
        "--scenario",
        json.dumps(scenario),
        "--faults",
        '{"idle_timeout_s": null}',
        "--lifetime",
        "25",
        "--exit-on-stdin-eof",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))
        assert ready["url"].startswith("https://127.0.0.2:")
        assert ready["region"] == REGION and ready["access_key"] == ACCESS_KEY
        assert Path(ready["ca_file"]) == tmp_path / "ca" / "ca.pem"
        # The CRT reads SSL_CERT_FILE when the transport is built: set it first.
        monkeypatch.setenv("SSL_CERT_FILE", ready["ca_file"])
        client = await make_client(ready["url"])
        bidi = await BidiStream.open_url(client)
        try:
            await bidi.send(*opening(), audio_start())
            await bidi.start_receiving()
            await bidi.send(*text_block("u1", "USER", "typed", interactive=True))
            await bidi.wait_for_event("contentEnd", type="AUDIO", stopReason="END_TURN", within=10)
            await bidi.send(*closing())
            await bidi.close_input()
            await bidi.wait_ended()
        finally:
            await bidi.aclose()
        assert "Hello from the CLI" in [t["content"] for t in bidi.events("textOutput")]
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
