"""Nova Sonic models, their voices and their limits (from AWS's Nova Sonic documentation)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.s2s import ConfigError

DEFAULT_MODEL = "amazon.nova-sonic-v1:0"
DEFAULT_VOICE = "matthew"

# Bedrock cross-region inference profiles prefix the model id with a geography.
_GEO_PREFIXES = ("us.", "eu.", "apac.", "jp.", "global.")

# The locale each v1 voice speaks (Nova 2 voices are polyglot but share these names).
_VOICE_LOCALES: dict[str, str] = {
    "tiffany": "en-US",
    "matthew": "en-US",
    "amy": "en-GB",
    "ambre": "fr-FR",
    "florian": "fr-FR",
    "beatrice": "it-IT",
    "lorenzo": "it-IT",
    "greta": "de-DE",
    "lennart": "de-DE",
    "lupe": "es-US",
    "carlos": "es-US",
}


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """How much earlier conversation a new stream accepts."""

    max_messages: int
    max_message_bytes: int
    max_total_bytes: int


@dataclass(frozen=True, slots=True)
class ModelSpec:
    base_id: str
    generation: int  # 1 = Nova Sonic, 2 = Nova 2 Sonic
    voices: tuple[str, ...]
    history: HistoryLimits

    @property
    def accepts_text_input(self) -> bool:
        """Nova 2 takes interactive USER text mid-session; v1 only takes text before audio."""
        return self.generation >= 2

    @property
    def has_turn_detection(self) -> bool:
        """Nova 2's sessionStart takes turnDetectionConfiguration.endpointingSensitivity."""
        return self.generation >= 2


MODELS: dict[str, ModelSpec] = {
    "amazon.nova-sonic-v1:0": ModelSpec(
        base_id="amazon.nova-sonic-v1:0",
        generation=1,
        voices=(
            "tiffany",
            "matthew",
            "amy",
            "ambre",
            "florian",
            "beatrice",
            "lorenzo",
            "greta",
            "lennart",
            "lupe",
            "carlos",
        ),
        history=HistoryLimits(max_messages=40, max_message_bytes=1024, max_total_bytes=40 * 1024),
    ),
    "amazon.nova-2-sonic-v1:0": ModelSpec(
        base_id="amazon.nova-2-sonic-v1:0",
        generation=2,
        voices=(
            "matthew",
            "tiffany",
            "amy",
            "olivia",
            "lupe",
            "carlos",
            "ambre",
            "florian",
            "tina",
            "lennart",
            "beatrice",
            "lorenzo",
            "carolina",
            "leo",
            "arjun",
            "kiara",
        ),
        history=HistoryLimits(
            max_messages=1000, max_message_bytes=50 * 1024, max_total_bytes=200 * 1024
        ),
    ),
}


def model_spec(model_id: str) -> ModelSpec:
    """The spec of `model_id` (plain, cross-region `us.…`, or an ARN ending in either).

    Raises ConfigError naming the supported models.
    """
    base = model_id.strip()
    if base.startswith("arn:"):
        base = base.rsplit("/", 1)[-1]
    for prefix in _GEO_PREFIXES:
        if base.startswith(prefix):
            base = base[len(prefix) :]
            break
    spec = MODELS.get(base)
    if spec is None:
        raise ConfigError(
            f"unknown Nova Sonic model {model_id!r}; supported: {', '.join(MODELS)}"
            " (a cross-region prefix such as 'us.' is allowed)"
        )
    return spec


def validate_voice(spec: ModelSpec, voice: str) -> str:
    """The normalised voice id, or ConfigError listing the model's voices."""
    name = voice.strip().lower()
    if name not in spec.voices:
        raise ConfigError(
            f"voice {voice!r} is not available for {spec.base_id}; valid voices:"
            f" {', '.join(spec.voices)}"
        )
    return name


def voice_for_language(spec: ModelSpec, language: str) -> str | None:
    """A voice of `spec` that speaks `language` ("fr", "fr-FR", "en_GB"), or None."""
    wanted = language.strip().replace("_", "-").lower()
    if not wanted:
        return None
    exact = [v for v in spec.voices if _VOICE_LOCALES.get(v, "").lower() == wanted]
    if exact:
        return exact[0]
    primary = wanted.split("-", 1)[0]
    loose = [
        v for v in spec.voices if _VOICE_LOCALES.get(v, "").lower().split("-", 1)[0] == primary
    ]
    return loose[0] if loose else None


def voice_locale(voice: str) -> str | None:
    return _VOICE_LOCALES.get(voice)
