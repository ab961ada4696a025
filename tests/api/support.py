"""Test support shared by the API and include tests: a fresh app DB and storage per test."""

from __future__ import annotations

import pytest

from include import quotas
from include.db import reset_engine
from include.migrations import migrate
from include.settings import get_settings


@pytest.fixture
def fresh_app_db(tmp_path, monkeypatch):
    """Point settings at ``tmp_path`` (SQLite app DB + file storage) and create the tables."""
    monkeypatch.setenv("BITBUDDIES_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("BITBUDDIES_DATABASE_URL", raising=False)
    monkeypatch.delenv("BITBUDDIES_STORAGE_URL", raising=False)
    get_settings.cache_clear()
    reset_engine()
    quotas.reset()  # per-user counters are keyed by user id, which every fresh DB starts again
    migrate()
    yield tmp_path
    reset_engine()
    quotas.reset()
    get_settings.cache_clear()


def make_user(email: str = "ada@example.com", tokens: int = 0):
    """A user with ``tokens`` granted; returns (user, api_key)."""
    from include import accounts

    user = accounts.create_user(email, tokens=0)
    if tokens:
        ledger_grant(user.id, tokens)
    return user, accounts.create_api_key(user.id, "test").key


def ledger_grant(user_id: int, tokens: int) -> None:
    from include import ledger

    ledger.grant(user_id, tokens, key=f"test-grant:{user_id}")


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}
