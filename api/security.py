"""API keys: how they are made and how they are stored (only their sha256)."""

from __future__ import annotations

import hashlib
import secrets

API_KEY_PREFIX = "bb_"


def new_api_key() -> str:
    """A fresh random key, e.g. ``bb_3q2...``; shown to its owner once."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    # Keys carry 256 random bits, so a plain sha256 is enough (no slow KDF needed) and lets
    # the lookup be a single indexed equality match.
    return hashlib.sha256(api_key.encode()).hexdigest()
