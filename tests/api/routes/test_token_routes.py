"""``/api/tokens``: token-pack checkout through the real stripe library against the Stripe fake."""

from __future__ import annotations

from include import ledger, payments
from include.settings import get_settings
from tests.api.support import auth, make_user
from tests.fakes.stripe_server import stripe_fake  # noqa: F401  (fixture)


def test_checkout_without_stripe_is_503(client, user_with_tokens, monkeypatch):
    for name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "BITBUDDIES_STRIPE_API_KEY", "BITBUDDIES_STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    _, key = user_with_tokens
    response = client.post("/api/tokens/checkout", headers=auth(key), json={"pack": "pack_10"})
    assert response.status_code == 503 and "not configured" in response.json()["detail"]


def test_checkout_returns_the_session_url_and_credits_nothing_yet(client, stripe_fake, fresh_app_db):
    user, key = make_user("buyer@example.com")
    response = client.post("/api/tokens/checkout", headers=auth(key), json={"pack": "pack_30"})
    assert response.status_code == 200, response.text
    body = response.json()
    session = stripe_fake.sessions[body["session_id"]]
    assert body["url"] == session["url"] and body["pack"]["tokens"] == 30
    assert session["amount_total"] == payments.TOKEN_PACKS["pack_30"].price_cents
    assert session["metadata"] == {"kind": "token_pack", "user_id": str(user.id), "pack": "pack_30", "tokens": "30"}
    assert ledger.balance(user.id) == 0


def test_checkout_with_one_idempotency_key_opens_one_session(client, stripe_fake, fresh_app_db):
    _, key = make_user("twice@example.com")
    headers = {**auth(key), "Idempotency-Key": "buy-1"}
    first = client.post("/api/tokens/checkout", headers=headers, json={"pack": "pack_10"}).json()
    again = client.post("/api/tokens/checkout", headers=headers, json={"pack": "pack_10"}).json()
    assert first["session_id"] == again["session_id"] and len(stripe_fake.sessions) == 1


def test_unknown_pack_is_422(client, stripe_fake, fresh_app_db):
    _, key = make_user("odd@example.com")
    response = client.post("/api/tokens/checkout", headers=auth(key), json={"pack": "pack_7"})
    assert response.status_code == 422 and "pack_10" in response.json()["detail"]
