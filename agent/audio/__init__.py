"""The audio path: framing and conversion of room audio, and sinks that play reply audio."""

from .framing import InputConverter, PcmConverter, Rechunker
from .livekit_sink import LiveKitSink
from .sink import AudioSink, MemorySink
from .wav import WavSink, wav_frames

__all__ = [
    "AudioSink",
    "InputConverter",
    "LiveKitSink",
    "MemorySink",
    "PcmConverter",
    "Rechunker",
    "WavSink",
    "wav_frames",
]
