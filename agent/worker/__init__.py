"""The LiveKit worker: dispatch, rooms, participants, transcripts, drain, and the CLI commands.

Modules import lazily from the CLI (`agent/__main__.py`) so `talk` and `--help` stay light.
"""
