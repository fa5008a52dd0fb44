"""The ops files: what local development and the container image rely on."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    steps = instructions(ROOT / "Dockerfile")
    kinds = [k for k, _ in steps]
    assert steps[0] == ("FROM", "python:3.12-slim")
    runs = [a for k, a in steps if k == "RUN"]
    assert any("uv sync --locked --no-dev" in r for r in runs)
    assert any("python -m agent download-files" in r for r in runs)
    assert any("UV_COMPILE_BYTECODE=1" in a for k, a in steps if k == "ENV")
    # Dependencies before code (layer cache), the lock copied with them.
    copies = [a for k, a in steps if k == "COPY"]
    assert any("uv.lock" in c and "pyproject.toml" in c for c in copies)
    assert kinds.index("USER") < kinds.index("CMD")
    user = next(a for k, a in steps if k == "USER")
    assert user not in ("root", "0")
    assert next(a for k, a in steps if k == "CMD") == '["python", "-m", "agent", "start"]'
    for path in ("agent", "plugins"):
        assert any(c.startswith(path) for c in copies)


def test_dockerignore_keeps_the_image_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", "tests", ".env"):
        assert entry in ignored


def test_livekit_yaml_matches_the_worker_defaults() -> None:
    from agent.worker.settings import DEFAULT_API_KEY, DEFAULT_API_SECRET, DEFAULT_URL

    config = yaml.safe_load((ROOT / "livekit.yaml").read_text())
    assert config["port"] == 7880 and DEFAULT_URL.endswith(":7880")
    assert config["rtc"]["tcp_port"] == 7881
    assert config["rtc"]["udp_port"] == 7882
    assert config["keys"] == {DEFAULT_API_KEY: DEFAULT_API_SECRET}
    assert config["development"] is True
