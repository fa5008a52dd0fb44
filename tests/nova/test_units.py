"""Config, credentials, history, renewal timing and error classification (no network)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aws_sdk_bedrock_runtime.models import (
    AccessDeniedException,
    ModelTimeoutException,
    ThrottlingException,
    ValidationException,
)
from smithy_aws_event_stream.exceptions import ChecksumMismatch, InvalidEventBytes

import agent.s2s as s2s
from agent.s2s import Config, ConfigError, HistoryMessage
from plugins.nova import NovaS2S, register
from plugins.nova.config import RetryPolicy, resolve_endpoint, resolve_settings
from plugins.nova.credentials import CredentialChain, StaticKeys, make_resolver
from plugins.nova.errors import classify
from plugins.nova.history import Conversation, cut_text, fit
from plugins.nova.logsafe import RedactSessionTokens
from plugins.nova.renewal import AudioBuffer, RenewalClock
from plugins.nova.voices import MODELS, model_spec

pytestmark = pytest.mark.timeout(10)


# ------------------------------------------------------------------ registry and config


def test_register_is_idempotent_and_listed() -> None:
    register()
    register()
    assert "nova" in s2s.providers()
    assert isinstance(s2s.new("nova"), NovaS2S)


def test_defaults() -> None:
    settings = resolve_settings(Config())
    assert settings.model_id == "amazon.nova-sonic-v1:0" and settings.voice == "matthew"
    assert (settings.max_tokens, settings.top_p, settings.temperature) == (1024, 0.9, 0.7)
    assert settings.renewal_after_s == 360 and settings.max_session_s == 450
    assert settings.region == "us-east-1"
    assert settings.endpoint == "https://bedrock-runtime.us-east-1.amazonaws.com"
    assert settings.instructions  # Nova needs a system prompt


@pytest.mark.parametrize(
    "model",
    ["amazon.nova-2-sonic-v1:0", "us.amazon.nova-2-sonic-v1:0", "eu.amazon.nova-sonic-v1:0"],
)
def test_model_forms(model: str) -> None:
    assert resolve_settings(Config(model=model)).model_id == model


def test_arn_model_form() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-2-sonic-v1:0"
    assert model_spec(arn) is MODELS["amazon.nova-2-sonic-v1:0"]


def test_language_picks_a_voice() -> None:
    assert resolve_settings(Config(language="fr-FR")).voice == "ambre"
    assert resolve_settings(Config(language="de")).voice == "greta"
    assert resolve_settings(Config(language="en_GB")).voice == "amy"


def test_language_mismatch_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="plugins.nova.config")
    resolve_settings(Config(voice="matthew", language="it-IT"))
    assert "speaks en-US but language is it-IT" in caplog.text


def test_region_and_endpoint_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert resolve_settings(Config()).endpoint == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert resolve_settings(Config()).region == "eu-central-1"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://global.example")
    assert resolve_settings(Config()).endpoint == "https://global.example"
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "https://bedrock.example/")
    assert resolve_settings(Config()).endpoint == "https://bedrock.example"
    settings = resolve_settings(
        Config(extra={"base_url": "https://override", "region": "ap-south-1"})
    )
    assert settings.endpoint == "https://override" and settings.region == "ap-south-1"
    assert resolve_endpoint("us-west-2", None) == "https://bedrock.example"


def test_extra_validation() -> None:
    with pytest.raises(ConfigError, match="top_p"):
        resolve_settings(Config(extra={"top_p": 2}))
    with pytest.raises(ConfigError, match="max_session_s"):
        resolve_settings(Config(extra={"renewal_after_s": 100, "max_session_s": 50}))
    with pytest.raises(ConfigError, match="tool_choice"):
        resolve_settings(Config(extra={"tool_choice": "nope"}))
    short = resolve_settings(Config(extra={"renewal_after_s": 2}))
    assert short.max_session_s == 450  # the default deadline stays above a short renewal
    assert resolve_settings(Config(extra={"renewal_after_s": 500})).max_session_s == 625


def test_unknown_extra_keys_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="plugins.nova.config")
    resolve_settings(Config(extra={"api_key": "sk-should-not-print", "regoin": "x"}))
    assert "regoin" in caplog.text and "sk-should-not-print" not in caplog.text


def test_duplicate_tools_rejected() -> None:
    tool = s2s.ToolDefinition("a", "A")
    with pytest.raises(ConfigError, match="unique"):
        resolve_settings(Config(tools=[tool, tool]))


def test_retry_policy_is_bounded_with_jitter() -> None:
    policy = RetryPolicy(max_retries=5, base_s=0.5, max_s=4.0, jitter=0.2)
    assert policy.delay(0, 0.5) == pytest.approx(0.5)
    assert policy.delay(3, 0.5) == pytest.approx(4.0)
    assert policy.delay(50, 0.5) == pytest.approx(4.0)
    assert policy.delay(1, 0.0) == pytest.approx(0.8) and policy.delay(1, 0.999) < 1.2


# ------------------------------------------------------------------ credentials


def test_static_keys_repr_hides_secrets() -> None:
    keys = StaticKeys("AKIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "TOKEN-123")
    text = repr(keys) + str(keys)
    assert "wJalr" not in text and "TOKEN-123" not in text and "AKIAEXAMPLE" not in text
    settings = resolve_settings(
        Config(
            extra={
                "aws_access_key_id": "AKIAEXAMPLE",
                "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG",
            }
        )
    )
    assert "wJalr" not in repr(settings) and "static" in repr(settings)


async def test_chain_reads_environment_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    chain = CredentialChain(region="us-east-1", profile=None, http_client=None)
    identity = await chain.get_identity(properties={})
    assert (identity.access_key_id, identity.secret_access_key) == ("AKIAENV", "env-secret")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACHANGED")
    assert (await chain.get_identity(properties={})) is identity  # cached for every frame
    assert "env-secret" not in repr(chain)


async def test_chain_reads_shared_credentials_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = file-secret\n"
        "[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = other-secret\n"
        "aws_session_token = other-token\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    identity = await CredentialChain(
        region="us-east-1", profile=None, http_client=None
    ).get_identity(properties={})
    assert identity.access_key_id == "AKIAFILE"
    other = await CredentialChain(
        region="us-east-1", profile="other", http_client=None
    ).get_identity(properties={})
    assert (other.access_key_id, other.session_token) == ("AKIAOTHER", "other-token")


async def test_chain_without_credentials_names_the_sources() -> None:
    chain = CredentialChain(region="us-east-1", profile=None, http_client=None)
    with pytest.raises(Exception, match="no AWS credentials found") as info:
        await chain.get_identity(properties={})
    assert "instance role" in str(info.value)


async def test_static_resolver() -> None:
    resolver = make_resolver(
        keys=StaticKeys("AKIA1", "s3cret"), region="us-east-1", profile=None, http_client=None
    )
    identity = await resolver.get_identity(properties={})
    assert identity.secret_access_key == "s3cret"


def test_sdk_debug_logs_are_redacted() -> None:
    record = logging.LogRecord(
        "smithy_core.aio.client",
        logging.DEBUG,
        __file__,
        1,
        "Sending request %s",
        ("Fields({'x-amz-security-token': Field(name='X-Amz-Security-Token', value=['tok-1'])})",),
        None,
    )
    assert RedactSessionTokens().filter(record)
    assert "tok-1" not in record.getMessage() and "***" in record.getMessage()


# ------------------------------------------------------------------ history


def test_cut_text_ends_on_a_word() -> None:
    assert cut_text("one two three four", 0.5) == "one two"
    assert cut_text("one two three four", 0.0) == ""
    assert cut_text("one two", 1.0) == "one two"
    assert cut_text("abcdefgh", 0.5) == "abcd"  # no space to back up to


def test_conversation_final_replaces_speculative_per_chunk() -> None:
    conv = Conversation()
    conv.user("hi", at=1.0)
    conv.assistant_text("t1", "Hello there.", final=False, at=1.1)
    conv.assistant_text("t1", "How can I help?", final=False, at=1.2)
    conv.assistant_text("t1", "Hello there!", final=True, at=1.5)
    limits = MODELS["amazon.nova-sonic-v1:0"].history
    assert conv.messages(limits) == [
        HistoryMessage("user", "hi"),
        HistoryMessage("assistant", "Hello there! How can I help?"),
    ]


def test_conversation_heard_truncates_by_audio() -> None:
    conv = Conversation()
    conv.user("count", at=1.0)
    conv.assistant_text("t1", "one two three four five six seven eight", final=False, at=1.1)
    conv.assistant_audio("t1", 48000 * 2, at=1.2)  # 2 s at 24 kHz PCM16
    assert conv.heard("t1", 1000.0)
    assert conv.text_of("t1") == "one two three four"
    assert not conv.heard("missing", 10.0)


def test_history_drops_trailing_user_being_replayed_and_merges() -> None:
    conv = Conversation([HistoryMessage("assistant", "Welcome"), HistoryMessage("user", "a")])
    conv.user("b", at=5.0)
    conv.assistant_text("t1", "reply", final=True, at=6.0)
    conv.user("c", at=10.0)
    limits = MODELS["amazon.nova-2-sonic-v1:0"].history
    assert conv.messages(limits, drop_user_since=9.0) == [
        HistoryMessage("user", "a b"),
        HistoryMessage("assistant", "reply"),
    ]
    assert conv.messages(limits, drop_user_since=11.0)[-1] == HistoryMessage("user", "c")


def test_typed_text_echo_is_not_duplicated() -> None:
    conv = Conversation()
    conv.user("Say hi.", at=1.0, typed=True)
    conv.user("Say hi.", at=1.5)  # the service's transcript of the typed text
    conv.user("Say hi.", at=2.0)  # the user really says it again
    limits = MODELS["amazon.nova-2-sonic-v1:0"].history
    assert conv.messages(limits) == [HistoryMessage("user", "Say hi. Say hi.")]


def test_fit_respects_limits_and_starts_with_user() -> None:
    v1 = MODELS["amazon.nova-sonic-v1:0"].history
    many = [
        HistoryMessage("user" if i % 2 == 0 else "assistant", f"m{i} " + "x" * 50)
        for i in range(100)
    ]
    kept = fit(many, v1)
    assert len(kept) <= v1.max_messages and kept[0].role == "user"
    assert kept[-1] == many[-1]
    huge = [HistoryMessage("user", "é" * 5000), HistoryMessage("assistant", "ok")]
    clipped = fit(huge, v1)
    assert len(clipped[0].text.encode()) <= v1.max_message_bytes
    nova2 = MODELS["amazon.nova-2-sonic-v1:0"].history
    big = [HistoryMessage("user" if i % 2 == 0 else "assistant", "y" * 40_000) for i in range(10)]
    kept2 = fit(big, nova2)
    assert sum(len(m.text) for m in kept2) <= nova2.max_total_bytes and kept2[0].role == "user"


# ------------------------------------------------------------------ telemetry


def test_usage_becomes_token_counters() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from plugins.nova.protocol import Usage
    from plugins.nova.telemetry import Telemetry

    reader = InMemoryMetricReader()
    telemetry = Telemetry("amazon.nova-sonic-v1:0", MeterProvider(metric_readers=[reader]))
    telemetry.usage(Usage(input_speech=120, output_speech=30, output_text=8))
    telemetry.usage(Usage(input_speech=10))
    telemetry.renewal(0.4, "renewal")
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, str, str], int] = {}
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "s2s.tokens":
                    continue
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    assert attrs["provider"] == "nova"
                    assert attrs["model"] == "amazon.nova-sonic-v1:0"
                    key = (str(attrs["direction"]), str(attrs["kind"]), "")
                    points[key] = int(point.value)  # type: ignore[union-attr]
    assert points == {
        ("input", "speech", ""): 130,
        ("output", "speech", ""): 30,
        ("output", "text", ""): 8,
    }


# ------------------------------------------------------------------ renewal and errors


def test_audio_buffer_is_bounded_by_duration() -> None:
    buf = AudioBuffer(0.1)  # 3200 bytes
    dropped = sum(buf.append(b"\x00" * 1024, float(i)) for i in range(10))
    assert buf.nbytes <= 3200 and dropped == 7 and buf.first_at == 7.0
    assert [at for _, at in buf.frames(since=8.5)] == [9.0]
    assert len(buf.drain()) == 3 and len(buf) == 0


def test_renewal_clock() -> None:
    clock = RenewalClock(renewal_after_s=10, max_session_s=15, standby_max_age_s=5)
    clock.reset(100.0)
    assert not clock.armed(105) and clock.armed(110) and clock.overdue(115)
    assert clock.next_check(101, None) == pytest.approx(9)
    assert clock.next_check(111, 109) == pytest.approx(3)
    assert clock.standby_stale(115, 109)
    assert clock.force_at == pytest.approx(115.75) and not clock.must_force(115.5)


@pytest.mark.parametrize(
    ("exc", "code", "retry"),
    [
        (None, "stream_ended", True),
        (ModelTimeoutException(message="Model has timed out"), "model_timeout", True),
        (ThrottlingException(message="slow down"), "throttled", True),
        (ValidationException(message="System instability detected."), "service_error", True),
        (
            ValidationException(message="InternalErrorCode=531::RST_STREAM closed"),
            "service_error",
            True,
        ),
        (ValidationException(message="Invalid input request"), "validation", False),
        (AccessDeniedException(message="no"), "access_denied", False),
        (ChecksumMismatch(1, 2), "bad_frame", True),
        (InvalidEventBytes(), "bad_frame", True),
        (ConnectionResetError("gone"), "connection", True),
        (TimeoutError(), "connection", True),
        (ConfigError("bad"), "config", False),
        (RuntimeError("bug"), "internal", False),
    ],
)
def test_classify(exc: BaseException | None, code: str, retry: bool) -> None:
    failure = classify(exc)
    assert (failure.code, failure.retryable) == (code, retry)


def test_sdk_per_event_loggers_are_quieted_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK logs every event (audio included) at DEBUG; a DEBUG root logger in `dev` must
    # not pay for that, but a level the app chose is left alone.
    from plugins.nova.transport import PER_EVENT_SDK_LOGGERS, quiet_sdk_loggers

    monkeypatch.setattr(logging.getLogger(), "level", logging.DEBUG)
    for name in PER_EVENT_SDK_LOGGERS:
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "level", logging.NOTSET)
        quiet_sdk_loggers()
        assert logger.getEffectiveLevel() == logging.INFO
        logger.setLevel(logging.DEBUG)
        quiet_sdk_loggers()
        assert logger.level == logging.DEBUG
