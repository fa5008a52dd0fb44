"""Fixtures of the end-to-end tier.

Outside the private network namespace only test_e2e.py (the runner) is collected; it
re-runs this directory inside a fresh namespace, where the real tests are collected and
share one LiveKit test server and one worker per provider.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import netns
from .harness import LkServer, Proc, base_env, python
from .providers import HARNESSES, ProviderHarness

# Inside the namespace: the real tests; outside: only the runner that enters it.
collect_ignore = ["test_e2e.py"] if netns.inside() else ["test_transport.py", "test_scenarios.py"]

AGENT_NAME = "s2s-e2e"
TONE_AGENT_NAME = "tone-agent"
REPORT_ENV = "S2S_E2E_REPORT"
PROVIDERS_ENV = "S2S_E2E_PROVIDERS"
# Seconds a room stays open after its last human leaves (livekit's departure timeout).
DEPARTURE_TIMEOUT_S = 3.0
WORKER_REGISTER_TIMEOUT_S = 40.0

_running: list[Proc] = []  # whose log tails are attached to failure reports


def pytest_configure(config: pytest.Config) -> None:
    # The dev secret "secret" is short by design (livekit-server --dev uses it).
    config.addinivalue_line("filterwarnings", "ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for proc in _running:
            report.sections.append((f"{proc.name} log (last lines)", proc.tail(80)))
    return report


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def metrics() -> Iterator[dict[str, Any]]:
    """Measured figures; written as JSON to $S2S_E2E_REPORT for the runner to show."""
    data: dict[str, Any] = {}
    yield data
    path = os.environ.get(REPORT_ENV)
    if path:
        Path(path).write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def _start(proc: Proc) -> Proc:
    _running.append(proc)
    return proc


def _stop(proc: Proc) -> None:
    proc.stop()
    if proc in _running:
        _running.remove(proc)


@pytest.fixture(scope="session")
def lkserver(workdir: Path) -> Iterator[LkServer]:
    argv = python(
        "-m",
        "tests.lkserver",
        "--host",
        netns.HOST,
        "--port",
        "7880",
        "--departure-timeout",
        str(DEPARTURE_TIMEOUT_S),
    )
    proc = _start(Proc("lkserver", argv, env=base_env(), log=workdir / "lkserver.log"))
    try:
        proc.wait_ready_line(timeout=30)
        yield LkServer(proc)
    finally:
        _stop(proc)


def _wait_registered(server: LkServer, proc: Proc, agent_name: str) -> None:
    deadline = time.monotonic() + WORKER_REGISTER_TIMEOUT_S
    while time.monotonic() < deadline:
        if not proc.alive:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        with urllib.request.urlopen(f"{server.http_url}/debug/state", timeout=5) as response:
            state = json.load(response)
        if any(w["agent_name"] == agent_name and w["connected"] for w in state["workers"]):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not register as {agent_name!r}:\n{proc.tail()}")


def _livekit_env(server: LkServer) -> dict[str, str]:
    return {
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
    }


@pytest.fixture(scope="session")
def tone_worker(lkserver: LkServer, workdir: Path) -> Iterator[Proc]:
    """A plain livekit-agents worker (tests/e2e/tone_agent.py), explicit dispatch."""
    env = base_env(**_livekit_env(lkserver), TONE_AGENT_NAME=TONE_AGENT_NAME)
    argv = python("-m", "tests.e2e.tone_agent", "dev", "--log-level", "INFO")
    proc = _start(Proc("tone-worker", argv, env=env, log=workdir / "tone-worker.log"))
    proc.start_log_copy()
    try:
        _wait_registered(lkserver, proc, TONE_AGENT_NAME)
        yield proc
    finally:
        _stop(proc)


def _provider_params() -> list[Any]:
    wanted = {p for p in os.environ.get(PROVIDERS_ENV, "").split(",") if p}
    return [pytest.param(h, id=h.name) for h in HARNESSES if not wanted or h.name in wanted]


@pytest.fixture(scope="session", params=_provider_params())
def provider(request: pytest.FixtureRequest, workdir: Path) -> ProviderHarness:
    harness: ProviderHarness = request.param
    why = harness.unavailable()
    if why is not None:
        pytest.skip(why)
    harness.setup(workdir / harness.name)
    return harness


@pytest.fixture(scope="session")
def tool_log(workdir: Path) -> Path:
    return workdir / "tool-calls.jsonl"


@pytest.fixture(scope="session")
def agent_worker(
    lkserver: LkServer, provider: ProviderHarness, workdir: Path, tool_log: Path
) -> Iterator[Proc]:
    """The project's worker (`python -m agent dev`), explicit dispatch as AGENT_NAME."""
    env = base_env(
        **_livekit_env(lkserver),
        **provider.worker_env(),
        AGENT_NAME=AGENT_NAME,
        S2S_TOOLS_MODULE="tests.e2e.e2e_tools",
        S2S_IDLE_PROCESSES="2",  # prewarmed job processes: no spawn on the first reply's path
        S2S_PARTICIPANT_GRACE="0.5",
        E2E_TOOL_LOG=str(tool_log),
    )
    argv = python("-m", "agent", "dev", "--log-level", "INFO")
    proc = _start(Proc(f"worker-{provider.name}", argv, env=env, log=workdir / "worker.log"))
    proc.start_log_copy()
    try:
        _wait_registered(lkserver, proc, AGENT_NAME)
        yield proc
    finally:
        _stop(proc)
