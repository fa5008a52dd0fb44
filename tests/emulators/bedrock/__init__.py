"""A wire-faithful Amazon Bedrock emulator for InvokeModelWithBidirectionalStream (Nova Sonic).

    from tests.emulators.bedrock import (
        BedrockEmulator, Scenario, Turn, ToolCallSpec, Faults, ACCESS_KEY, SECRET_KEY, REGION,
    )

    async with BedrockEmulator(scenario=Scenario(...), faults=Faults(...), tls=test_ca) as emu:
        emu.url        # "https://127.0.0.1:<port>"
        emu.ca_file    # the CA PEM; clients trust it via SSL_CERT_FILE (set before the
                       # AWSCRTHTTPClient is constructed: it builds its TLS context then)
        emu.streams    # list[StreamRecord], one per request, in arrival order
        await emu.wait_for(lambda: ..., timeout=5)

It shares no code with plugins/ or agent/: framing, SigV4 and the protocol rules are written
here from the published formats, so a client-side codec mistake cannot cancel itself out.
Run standalone with `python -m tests.emulators.bedrock --help`.
"""

from .audio import EnergyEndpointer, dominant_frequency, sine_pcm16
from .emulator import ACCESS_KEY, REGION, SECRET_KEY, SESSION_TOKEN, BedrockEmulator
from .records import StreamRecord, TurnRecord
from .scenario import (
    NOVA_2_SONIC,
    NOVA_2_SONIC_US,
    NOVA_SONIC_V1,
    Faults,
    Scenario,
    ToolCallSpec,
    Turn,
)
from .session import IDLE_TIMEOUT_MESSAGE, INTERRUPTED_MARKER, MODEL_TIMEOUT_MESSAGE

__all__ = [
    "ACCESS_KEY",
    "IDLE_TIMEOUT_MESSAGE",
    "INTERRUPTED_MARKER",
    "MODEL_TIMEOUT_MESSAGE",
    "NOVA_2_SONIC",
    "NOVA_2_SONIC_US",
    "NOVA_SONIC_V1",
    "REGION",
    "SECRET_KEY",
    "SESSION_TOKEN",
    "BedrockEmulator",
    "EnergyEndpointer",
    "Faults",
    "Scenario",
    "StreamRecord",
    "ToolCallSpec",
    "Turn",
    "TurnRecord",
    "dominant_frequency",
    "sine_pcm16",
]
