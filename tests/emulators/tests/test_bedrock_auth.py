"""SigV4: the Authorization header and the per-frame chunk-signature chain."""

from __future__ import annotations

import pytest
from aws_sdk_bedrock_runtime.models import AccessDeniedException, ValidationException
from smithy_aws_core.identity import AWSCredentialsIdentity, AWSIdentityProperties
from smithy_core.aio.interfaces.identity import IdentityResolver
from smithy_core.exceptions import CallError

from tests.emulators.bedrock import SECRET_KEY, SESSION_TOKEN, Faults, Scenario
from tests.emulators.bedrock.fixtures import BedrockEmulatorFactory
from tests.emulators.bedrock.sdk import make_client

from .nova_client import BidiStream, audio_start, closing, opening, silence

pytestmark = pytest.mark.timeout(30)

NO_TIMERS = Faults(idle_timeout_s=None, connection_limit_s=None)


async def test_every_frame_signature_verified(bedrock_emulator: BedrockEmulatorFactory) -> None:
    emu = await bedrock_emulator(faults=NO_TIMERS)
    bidi = await BidiStream.open(emu)
    try:
        await bidi.start_receiving()
        events = [*opening(), audio_start()]
        await bidi.send(*events)
        await bidi.send_audio(silence(320))  # 10 frames
        await bidi.send(*closing())
        await bidi.close_input()
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    rec = emu.streams[0]
    await emu.wait_for(lambda: rec.finished)
    sent = len(events) + 10 + 3
    assert rec.signed_frames == sent + 1  # + the final empty frame
    assert rec.client_end_frame and rec.client_end_stream
    assert rec.signature_failures == 0 and emu.signature_failures == 0
    assert rec.ended_cleanly


@pytest.mark.parametrize(
    ("kwargs", "error_id"),
    [
        ({"secret_key": SECRET_KEY + "x"}, "InvalidSignatureException"),
        ({"access_key": "AKIAUNKNOWN000000000"}, "UnrecognizedClientException"),
        ({"region": "eu-west-1"}, "InvalidSignatureException"),
    ],
)
async def test_bad_credentials_refused_before_the_stream(
    bedrock_emulator: BedrockEmulatorFactory, kwargs: dict[str, str], error_id: str
) -> None:
    emu = await bedrock_emulator(faults=NO_TIMERS)
    client = await make_client(emu.url, **kwargs)
    bidi = await BidiStream.open(emu, client=client)
    try:
        with pytest.raises(CallError) as caught:
            await bidi.start_receiving()
    finally:
        await bidi.aclose()
    assert error_id in str(caught.value)
    assert not isinstance(caught.value, AccessDeniedException)
    rec = emu.streams[0]
    assert rec.http_status in (400, 403)
    assert rec.http_error_type == error_id
    assert rec.signature_failures == 1 and emu.signature_failures == 1
    assert rec.events == []


async def test_session_token_required_when_configured(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    emu = await bedrock_emulator(faults=NO_TIMERS, session_token=SESSION_TOKEN)
    without = await BidiStream.open(emu)
    try:
        with pytest.raises(CallError, match="UnrecognizedClientException"):
            await without.start_receiving()
    finally:
        await without.aclose()
    client = await make_client(emu.url, session_token=SESSION_TOKEN)
    good = await BidiStream.open(emu, client=client)
    try:
        await good.start_receiving()
        await good.send(*opening(), audio_start(), *closing())
        await good.close_input()
        await good.wait_ended()
    finally:
        await good.aclose()
    await emu.wait_for(lambda: all(s.finished for s in emu.streams))
    assert [s.http_status for s in emu.streams] == [403, 200]
    assert emu.streams[1].ended_cleanly


class _SwitchingResolver(IdentityResolver[AWSCredentialsIdentity, AWSIdentityProperties]):
    """Hands out the right secret, then (once `tamper` is set) a wrong one."""

    def __init__(self, good: AWSCredentialsIdentity) -> None:
        self.good = good
        self.tamper = False

    async def get_identity(self, *, properties: AWSIdentityProperties) -> AWSCredentialsIdentity:
        if not self.tamper:
            return self.good
        return AWSCredentialsIdentity(
            access_key_id=self.good.access_key_id,
            secret_access_key=self.good.secret_access_key + "tampered",
        )


async def test_tampered_chunk_signature_mid_stream(
    bedrock_emulator: BedrockEmulatorFactory,
) -> None:
    emu = await bedrock_emulator(scenario=Scenario(close_grace_s=0.5), faults=NO_TIMERS)
    bidi = await BidiStream.open(emu)
    try:
        await bidi.start_receiving()
        await bidi.send(*opening(), audio_start())
        await bidi.send_audio(silence(64))
        # The SDK resolves the identity for every event it signs; from here on it signs
        # with a wrong secret, so the chain breaks at the next frame.
        signing = bidi._stream.input_stream._signing_config
        resolver = _SwitchingResolver(await signing.identity_resolver.get_identity(properties={}))
        signing.identity_resolver = resolver
        resolver.tamper = True
        await bidi.send_audio(silence(32))
        await bidi.wait_ended()
    finally:
        await bidi.aclose()
    assert isinstance(bidi.error, ValidationException)
    assert "signature we calculated does not match" in str(bidi.error.message)
    rec = emu.streams[0]
    assert rec.signature_failures == 1 and emu.signature_failures == 1
    assert rec.exception_types == ["validationException"]
    assert rec.audio_frames == 2  # the frames before the tampered one were taken
    assert rec.signed_frames == 6 + 2  # opening (5) + audio contentStart + 2 audio frames
