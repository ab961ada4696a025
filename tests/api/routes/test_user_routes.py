"""``/api/me``: the caller and their balance."""

from __future__ import annotations

from include import ledger
from tests.api.support import auth, make_user


def test_me_shows_the_balance_from_the_ledger(client, fresh_app_db):
    user, key = make_user("ada@example.com", tokens=4)
    ledger.grant(user.id, 2, key="bought-2", reason="purchase")
    assert client.get("/api/me", headers=auth(key)).json() == {"id": user.id, "email": "ada@example.com", "balance": 6}
