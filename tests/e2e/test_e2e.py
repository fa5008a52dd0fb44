"""The end-to-end tier's entry point in an ordinary `uv run pytest`.

libwebrtc needs a non-loopback interface, so the tier runs in a fresh network namespace
with a veth pair: this test re-runs tests/e2e under `unshare` and asserts it passed,
showing the inner run's output when it did not. Extra pytest arguments for the inner run
can be given in S2S_E2E_ARGS (e.g. `-k barge_in -x`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from . import netns
from .conftest import REPORT_ENV
from .harness import ROOT

# The inner tests each have their own (smaller) timeouts; this bounds the whole tier.
TIER_TIMEOUT_S = 240


@pytest.mark.timeout(TIER_TIMEOUT_S + 30)
def test_e2e_tier_in_private_network_namespace(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    prefix, why = netns.unshare_prefix()
    if not prefix:
        pytest.skip(f"end-to-end tier skipped: {why}")
    report = tmp_path / "e2e-report.json"
    env = dict(os.environ, **{netns.ENV_MARKER: "1", REPORT_ENV: str(report)})
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(Path(__file__).parent),
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
        "--durations=0",
        *shlex.split(os.environ.get("S2S_E2E_ARGS", "")),
    ]
    started = time.monotonic()
    try:
        result = subprocess.run(
            netns.command(argv),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"the e2e tier did not finish within {TIER_TIMEOUT_S}s:\n{output or ''}")
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the e2e tier failed (exit {result.returncode}):\n{output}"
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    print(f"e2e tier: {summary} in {elapsed:.1f} s")
    if report.exists():
        measured = json.loads(report.read_text(encoding="utf-8"))
        record_property("e2e_measurements", measured)
        print("e2e measurements:", json.dumps(measured, indent=1))
