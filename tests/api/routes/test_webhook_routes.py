"""``/api/webhooks/stripe``: signed deliveries from the Stripe fake credit a pack exactly once."""

from __future__ import annotations

import sys
import types

import pytest
from sqlmodel import select

from include import ledger
from include.db import session_scope
from include.models import LedgerEntry, StripeEvent
from tests.api.support import auth, make_user
from tests.fakes.stripe_server import sign, stripe_fake  # noqa: F401  (fixture)


@pytest.fixture
def stripe(client, stripe_fake):
    """The fake delivers its webhooks to the app under test."""
    stripe_fake.webhook_sender = lambda body, headers: client.post("/api/webhooks/stripe", content=body, headers=headers).status_code
    return stripe_fake


def buy(client, key: str, pack: str = "pack_10") -> str:
    response = client.post("/api/tokens/checkout", headers=auth(key), json={"pack": pack})
    assert response.status_code == 200, response.text
    return response.json()["session_id"]


def purchases() -> list[LedgerEntry]:
    with session_scope() as session:
        return list(session.exec(select(LedgerEntry).where(LedgerEntry.reason == "purchase")).all())


def test_a_webhook_delivered_three_times_credits_once(client, stripe, fresh_app_db):
    user, key = make_user("buyer@example.com")
    session_id = buy(client, key)
    event = stripe.complete_session(session_id, deliveries=3)
    assert ledger.balance(user.id) == 10
    assert [p.idempotency_key for p in purchases()] == [ledger.purchase_key(session_id)]
    with session_scope() as session:
        assert session.get(StripeEvent, event["id"]).type == "checkout.session.completed"


def test_duplicates_and_reordering_of_many_events_credit_each_session_once(client, stripe, fresh_app_db):
    user, key = make_user("shopper@example.com")
    sessions = [buy(client, key, pack) for pack in ("pack_10", "pack_30", "pack_10")]
    events = [stripe.complete_session(s, deliveries=0) for s in sessions]
    # The same session can also be reported by a second event (Stripe may emit more than one).
    events.append(stripe.make_event("checkout.session.completed", stripe.sessions[sessions[0]]))
    statuses = stripe.deliver_many(events, shuffle_seed=7, repeat=3)
    assert set(statuses) == {200}
    assert ledger.balance(user.id) == 50 and len(purchases()) == 3


def test_a_bad_signature_is_400_and_credits_nothing(client, stripe, fresh_app_db):
    user, key = make_user("forger@example.com")
    session_id = buy(client, key)
    event = stripe.complete_session(session_id, deliveries=0)
    import json

    forged = sign(json.dumps(event, indent=2), "whsec_not_the_secret")
    assert stripe.deliver(event, signature=forged) == 400
    assert stripe.deliver(event, signature="t=1,v1=deadbeef") == 400
    response = client.post("/api/webhooks/stripe", content=b'{"id": "evt_x"}', headers={"Stripe-Signature": ""})
    assert response.status_code == 400
    assert ledger.balance(user.id) == 0 and purchases() == []


def test_a_tampered_body_with_a_valid_old_signature_is_refused(client, stripe, fresh_app_db):
    user, key = make_user("tamper@example.com")
    event = stripe.complete_session(buy(client, key), deliveries=0)
    import json

    signature = sign(json.dumps(event, indent=2), stripe.webhook_secret)
    event["data"]["object"]["metadata"]["pack"] = "pack_100"
    assert stripe.deliver(event, signature=signature) == 400
    assert ledger.balance(user.id) == 0


def test_an_unpaid_session_credits_nothing_until_its_payment_succeeds(client, stripe, fresh_app_db):
    user, key = make_user("async@example.com")
    session_id = buy(client, key)
    unpaid = dict(stripe.sessions[session_id])
    assert stripe.deliver(stripe.make_event("checkout.session.completed", unpaid)) == 200
    assert ledger.balance(user.id) == 0
    stripe.complete_session(session_id, deliveries=0)
    assert stripe.deliver(stripe.make_event("checkout.session.async_payment_succeeded", stripe.sessions[session_id])) == 200
    assert ledger.balance(user.id) == 10


def test_sticker_order_sessions_go_to_the_orders_module_when_it_exists(client, stripe, fresh_app_db, monkeypatch):
    seen = []
    monkeypatch.setitem(sys.modules, "include.orders", types.SimpleNamespace(on_checkout_completed=seen.append))
    user, _ = make_user("stickers@example.com")
    from include import payments

    session = payments.create_checkout_session(
        kind="sticker_order", reference="order-1", user_id=user.id,
        line_items=[{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "Sheet"}}}],
        metadata={"order_id": "order-1"}, idempotency_key="checkout:order:order-1",
        success_url="http://x/ok", cancel_url="http://x/no",
    )
    stripe.complete_session(session["id"], deliveries=2)
    assert [s["metadata"]["order_id"] for s in seen] == ["order-1"]  # the duplicate was deduplicated by event id
    assert ledger.balance(user.id) == 0


def test_unknown_kinds_and_event_types_are_acknowledged(client, stripe, fresh_app_db, monkeypatch):
    monkeypatch.setitem(sys.modules, "include.orders", None)  # the module is not deployed
    assert stripe.deliver(stripe.make_event("customer.created", {"id": "cus_1", "object": "customer"})) == 200
    odd = {"id": "cs_odd", "object": "checkout.session", "payment_status": "paid", "metadata": {"kind": "gift"}}
    assert stripe.deliver(stripe.make_event("checkout.session.completed", odd)) == 200
    sticker = {"id": "cs_st", "object": "checkout.session", "payment_status": "paid", "metadata": {"kind": "sticker_order"}}
    assert stripe.deliver(stripe.make_event("checkout.session.completed", sticker)) == 200
    assert purchases() == []


def test_a_failing_handler_answers_500_and_the_redelivery_is_processed(client, stripe, fresh_app_db, monkeypatch):
    calls = []

    def flaky(session):
        calls.append(session["id"])
        if len(calls) == 1:
            raise RuntimeError("database hiccup")

    monkeypatch.setitem(sys.modules, "include.orders", types.SimpleNamespace(on_checkout_completed=flaky))
    from fastapi.testclient import TestClient

    from api.main import app

    raising_client = TestClient(app, raise_server_exceptions=False)
    stripe.webhook_sender = lambda body, headers: raising_client.post("/api/webhooks/stripe", content=body, headers=headers).status_code
    from include import payments

    user, _ = make_user("retry@example.com")
    session = payments.create_checkout_session(
        kind="sticker_order", reference="order-2", user_id=user.id,
        line_items=[{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "Sheet"}}}],
        metadata={"order_id": "order-2"}, idempotency_key="checkout:order:order-2",
        success_url="http://x/ok", cancel_url="http://x/no",
    )
    event = stripe.complete_session(session["id"], deliveries=0)
    assert stripe.deliver(event) == 500
    assert stripe.deliver(event) == 200 and len(calls) == 2
    assert stripe.deliver(event) == 200 and len(calls) == 2
