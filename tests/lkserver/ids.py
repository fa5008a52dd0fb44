"""Ids in LiveKit's shapes: PA_ participants, RM_ rooms, TR_ tracks, AJ_ jobs, AD_ dispatches."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_sid(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(12))
