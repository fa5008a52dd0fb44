"""`talk`: the bridge with a WAV file as the user and a WAV file as the speaker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from agent.s2s import ConversationContext, Session
from agent.tools import ToolRegistry
from agent.worker.metadata import JobOptions
from agent.worker.settings import Settings
from agent.worker.talk import TalkOptions, talk
from tests.support.scripted import ScriptedSession

FIXTURE = Path(__file__).parents[1] / "fixtures" / "stop_joke.wav"


def starter(session: ScriptedSession, seen: list[JobOptions] | None = None):  # type: ignore[no-untyped-def]
    async def start(
        options: JobOptions, tools: ToolRegistry, context: ConversationContext
    ) -> Session:
        if seen is not None:
            seen.append(options)
        return session

    return start


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        return wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), np.int16)


async def test_one_exchange_end_to_end(tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "reply.wav"
    # 1.93 s of speech = 97 frames of 20 ms; the reply comes in the appended silence.
    session = ScriptedSession(reply_after_frames=110, reply_ms=400)
    printed = io.StringIO()
    seen: list[JobOptions] = []
    code = await talk(
        settings,
        TalkOptions(str(FIXTURE), str(out), silence_ms=600, timeout_s=5, speed=20),
        out=printed,
        start_session=starter(session, seen),
    )
    assert code == 0, printed.getvalue()
    assert seen[0].provider == "scripted"
    # All of the speech and the silence reached the session, at its rate and frame size.
    assert session.frames_in >= 110
    assert {len(chunk) for chunk in session.audio_in[:-1]} == {640}
    rate, reply = read_wav(out)
    assert rate == 24000
    assert abs(len(reply) - 0.4 * rate) <= 0.02 * rate
    assert np.abs(reply).max() > 4000  # the tone, not silence
    lines = printed.getvalue().splitlines()
    assert lines == [
        "you:   user said something",
        "agent: a scripted reply",
        f"reply: 0.40 s written to {out}",
    ]
    assert session.closed


async def test_no_reply_times_out(tmp_path: Path, settings: Settings) -> None:
    session = ScriptedSession()  # never answers
    code = await talk(
        settings,
        TalkOptions(str(FIXTURE), str(tmp_path / "r.wav"), silence_ms=100, timeout_s=0.3, speed=20),
        out=io.StringIO(),
        start_session=starter(session),
    )
    assert code == 1
    assert session.closed


async def test_bad_input_is_a_usage_error(tmp_path: Path, settings: Settings) -> None:
    not_wav = tmp_path / "x.wav"
    not_wav.write_bytes(b"definitely not RIFF")
    for path in (tmp_path / "missing.wav", not_wav):
        code = await talk(
            settings,
            TalkOptions(str(path), str(tmp_path / "r.wav")),
            out=io.StringIO(),
            start_session=starter(ScriptedSession()),
        )
        assert code == 2


def test_cli_with_raw_pcm_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    pcm = (np.sin(np.arange(16000) / 16000 * 2 * np.pi * 200) * 5000).astype(np.int16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S2S_", "LIVEKIT_"))},
        "S2S_PROVIDER": "scripted",
        "S2S_TOOLS_MODULE": "tests.worker.scripted_provider",
        "S2S_PROVIDER_OPTIONS": '{"reply_after_frames": 60, "reply_ms": 300}',
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "talk",
            "--in",
            "-",
            "--out",
            str(out),
            "--in-rate",
            "16000",
            "--silence-ms",
            "400",
            "--timeout",
            "10",
            "--speed",
            "20",
        ],
        input=pcm.tobytes(),
        env=env,
        capture_output=True,
        timeout=40,
        cwd=Path(__file__).parents[2],
    )
    stdout = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert "agent: a scripted reply" in stdout
    assert f"reply: 0.30 s written to {out}" in stdout
    rate, reply = read_wav(out)
    assert rate == 24000 and len(reply) == int(0.3 * rate)


def test_cli_reports_an_unknown_provider(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "talk",
            "--in",
            str(FIXTURE),
            "--out",
            str(tmp_path / "r.wav"),
            "--provider",
            "nosuch",
        ],
        capture_output=True,
        text=True,
        timeout=40,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == 2
    assert "unknown provider 'nosuch'" in proc.stderr
