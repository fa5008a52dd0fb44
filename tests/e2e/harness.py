"""Processes of the end-to-end tier: spawning, ready lines, logs, and the server's state."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # The namespace is not a PID namespace: children must not outlive the test run.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    """A child process whose output goes to a log file (after an optional JSON ready line)."""

    def __init__(self, name: str, argv: list[str], *, env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("w", encoding="utf-8", errors="replace")
        self.ready: dict[str, Any] = {}
        self._drain: threading.Thread | None = None
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            preexec_fn=_die_with_parent,
        )

    def wait_ready_line(self, timeout: float) -> dict[str, Any]:
        """Read the first stdout line as JSON; afterwards stdout is copied to the log."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.popen.stdout, selectors.EVENT_READ)
            while not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline or self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} did not get ready:\n{self.tail()}")
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited before it was ready:\n{self.tail()}")
        self.ready = json.loads(line)
        self._drain = threading.Thread(target=self._copy_stdout, name=f"{self.name}-stdout")
        self._drain.start()
        return self.ready

    def start_log_copy(self) -> None:
        """For a process without a ready line: copy all stdout to the log."""
        self._drain = threading.Thread(target=self._copy_stdout, name=f"{self.name}-stdout")
        self._drain.start()

    def _copy_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._log.write(line)
            self._log.flush()

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if self._drain is not None:
            self._drain.join(5)
        self._log.close()
        return self.popen.returncode


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    # The dev secret is short by design (as `livekit-server --dev`); don't warn about it.
    env["PYTHONWARNINGS"] = "ignore:The HMAC key is"
    env.update(extra)
    return env


class LkServer:
    """The test LiveKit server process and its /debug/state."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.url: str = proc.ready["url"]
        self.http_url: str = proc.ready["http_url"]
        self.api_key = "devkey"
        self.api_secret = "secret"

    async def state(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.http_url}/debug/state") as response,
        ):
            response.raise_for_status()
            data: dict[str, Any] = await response.json()
            return data

    async def wait_state(
        self, predicate: Callable[[dict[str, Any]], Any], limit_s: float, what: str
    ) -> dict[str, Any]:
        """Poll /debug/state until `predicate(state)` is truthy."""
        deadline = time.monotonic() + limit_s
        while True:
            state = await self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {limit_s}s waiting for {what}; server state:\n"
                    + json.dumps(state, indent=1)[:6000]
                )
            await asyncio.sleep(0.1)

    @staticmethod
    def jobs(state: Mapping[str, Any], room: str) -> list[dict[str, Any]]:
        return [j for j in state["jobs"] if j["room"] == room]

    @staticmethod
    def room(state: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        return next((r for r in state["rooms"] if r["name"] == name), None)
