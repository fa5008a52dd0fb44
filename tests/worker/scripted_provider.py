"""Imported through S2S_TOOLS_MODULE by subprocess tests: registers the scripted provider
(tests/support/scripted.py) under the name "scripted" in that process."""

from __future__ import annotations

from agent.s2s import providers
from tests.support.scripted import register_scripted

if "scripted" not in providers():
    register_scripted()
