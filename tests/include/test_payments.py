"""include.payments through the real stripe library against the Stripe fake: idempotent refunds and sessions."""

from __future__ import annotations

import pytest

from include import payments
from include.settings import get_settings
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.fakes.stripe_server import stripe_fake  # noqa: F401  (fixture)


def paid_session(stripe_fake, user_id: int) -> dict:
    session = payments.checkout_token_pack(user_id, None, "pack_10", "r1")
    stripe_fake.webhook_sender = lambda body, headers: 200
    stripe_fake.complete_session(session["id"], deliveries=0)
    return stripe_fake.sessions[session["id"]]


def test_payments_configured_needs_both_keys(monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    get_settings.cache_clear()
    assert not payments.payments_configured()
    with pytest.raises(payments.PaymentsNotConfigured):
        payments.client()
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
    get_settings.cache_clear()
    assert payments.payments_configured()
    get_settings.cache_clear()


def test_a_refund_retried_with_its_key_refunds_once(stripe_fake, fresh_app_db):
    user, _ = make_user()
    session = paid_session(stripe_fake, user.id)
    pi = session["payment_intent"]
    first = payments.refund_payment(pi, None, idempotency_key="refund:order:1")
    again = payments.refund_payment(pi, None, idempotency_key="refund:order:1")
    assert first["id"] == again["id"] and len(stripe_fake.refunds) == 1
    assert stripe_fake.refunded_amount(pi) == session["amount_total"]
    # A new key cannot refund beyond what was paid.
    with pytest.raises(payments.PaymentError, match="already been refunded"):
        payments.refund_payment(pi, None, idempotency_key="refund:order:1:other")


def test_an_idempotency_key_reused_with_other_parameters_is_an_error(stripe_fake, fresh_app_db):
    user, _ = make_user()
    pi = paid_session(stripe_fake, user.id)["payment_intent"]
    payments.refund_payment(pi, 100, idempotency_key="refund:partial")
    with pytest.raises(payments.PaymentError, match="same parameters"):
        payments.refund_payment(pi, 200, idempotency_key="refund:partial")
    assert stripe_fake.refunded_amount(pi) == 100


def test_a_wrong_api_key_is_refused(stripe_fake, fresh_app_db, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_wrong")
    get_settings.cache_clear()
    with pytest.raises(payments.PaymentError):
        payments.checkout_token_pack(1, None, "pack_10", "r2")


def test_fulfil_refuses_a_session_whose_amount_does_not_match_the_pack(stripe_fake, fresh_app_db):
    user, _ = make_user()
    session = dict(paid_session(stripe_fake, user.id), amount_total=1)
    with pytest.raises(ValueError, match="costs"):
        payments.fulfil_token_pack(session)
