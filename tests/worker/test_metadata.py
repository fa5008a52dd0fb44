from __future__ import annotations

import json
import logging

import pytest

from agent.worker.metadata import MetadataError, job_options, parse_metadata
from agent.worker.settings import Settings

BASE = Settings(provider="nova", voice="matthew", instructions="Be brief.", greeting="Hi.")


def providers() -> list[str]:
    return ["nova", "scripted"]


def test_empty_metadata_uses_the_settings() -> None:
    for metadata in (None, "", "   "):
        options = job_options(BASE, metadata, available_providers=providers)
        assert options.provider == "nova"
        assert options.voice == "matthew"
        assert options.instructions == "Be brief."
        assert options.greeting == "Hi."
        assert options.participant_identity is None


def test_metadata_overrides_every_option() -> None:
    metadata = json.dumps(
        {
            "provider": "scripted",
            "model": "m2",
            "voice": "tiffany",
            "instructions": "Speak French.",
            "language": "fr-FR",
            "latency_target": "high",
            "participant_identity": "caller-7",
            "greeting": "Bonjour!",
        }
    )
    options = job_options(BASE, metadata, available_providers=providers)
    assert options.provider == "scripted"
    assert (options.model, options.voice, options.language) == ("m2", "tiffany", "fr-FR")
    assert options.instructions == "Speak French."
    assert options.latency_target == "high"
    assert options.participant_identity == "caller-7"
    assert options.greeting == "Bonjour!"


def test_null_clears_a_setting() -> None:
    options = job_options(BASE, '{"voice": null, "greeting": ""}')
    assert options.voice is None
    assert options.greeting is None


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "must be a JSON object; got list"),
        ('"voice"', "must be a JSON object; got str"),
        ('{"voice": 3}', "'voice' must be a string; got int"),
        ('{"greeting": {"text": "hi"}}', "'greeting' must be a string; got dict"),
        ('{"latency_target": "instant"}', "'latency_target' must be one of low, medium, high"),
        ('{"provider": "gpt-9"}', "unknown provider 'gpt-9' in job metadata; available: nova"),
    ],
)
def test_bad_metadata_is_rejected_with_a_clear_reason(metadata: str, message: str) -> None:
    with pytest.raises(MetadataError) as info:
        job_options(BASE, metadata, available_providers=providers)
    assert message in str(info.value)


def test_oversized_metadata_is_rejected() -> None:
    with pytest.raises(MetadataError, match="larger than"):
        parse_metadata(json.dumps({"instructions": "x" * 70_000}))


def test_unknown_keys_are_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.worker.metadata"):
        options = job_options(BASE, '{"voise": "x", "crm_id": 12, "voice": "amy"}')
    assert options.voice == "amy"
    assert "ignoring unknown job metadata key(s): crm_id, voise" in caplog.text


def test_provider_options_follow_only_their_provider() -> None:
    settings = Settings(provider="nova", provider_options={"region": "eu-north-1"})
    assert job_options(settings, None).provider_options == {"region": "eu-north-1"}
    assert job_options(settings, '{"provider": "scripted"}').provider_options == {}
