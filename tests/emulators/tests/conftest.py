"""Fixtures for the emulator's own tests."""

from tests.emulators.bedrock.fixtures import bedrock_emulator, test_ca

__all__ = ["bedrock_emulator", "test_ca"]
