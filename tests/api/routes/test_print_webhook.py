"""``POST /api/webhooks/print``: each delivery recorded, the state taken from the vendor, never from the body."""

from __future__ import annotations

import pytest

from fulfillment.vendors.base import ShippingAddress
from fulfillment.vendors.local import LocalOutboxVendor
from include.print_vendors import local_outbox_dir
from include import orders
from include.db import session_scope
from include.models import Generation
from tests.api.support import make_user
from include.settings import get_settings
from tests.include.test_orders import ADDRESS


def webhook(kind: str, order_id: str, **data) -> dict:
    return {"type": kind, "created": 1764140000, "retries": 0, "store": 1, "data": {"order": {"external_id": order_id}, **data}}


@pytest.fixture
def submitted_order(fresh_app_db):
    user, _ = make_user("ada@example.com")
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt="wave", upload_path="u/p.jpg", status="succeeded", assets={"poster": "p.png"})
        session.add(generation)
    order = orders.create_order(user.id, [generation.id], "A4", 1, ADDRESS)
    orders.mark_paid(order.id, orders.DEV_AUTOPAY, None)
    vendor = LocalOutboxVendor(local_outbox_dir())
    job = vendor.submit(order.id, orders.sheet_key(order.id), ShippingAddress(**ADDRESS))
    orders.mark_submitted(order.id, job)
    return order.id, vendor


def post(client, body, **params):
    """A delivery as the vendor makes it: the shared secret in the registered URL."""
    return client.post("/api/webhooks/print", json=body, params={"token": get_settings().resolved_print_webhook_secret, **params})


def test_a_failure_delivered_three_times_is_recorded_once_and_fails_the_order_once(client, submitted_order):
    order_id, vendor = submitted_order
    vendor.mark_failed(order_id, "printer on fire")
    for retries in range(3):  # the vendor's redeliveries of one event differ only in their retry count
        body = {**webhook("order_failed", order_id, reason="printer on fire"), "retries": retries}
        response = post(client, body)
        assert response.status_code == 200 and response.json()["order_status"] == "failed"
    events = orders.timeline(order_id)
    assert [e.kind for e in events].count("webhook") == 1
    assert [e.status for e in events if e.kind == "status"].count("failed") == 1
    order = orders.get(order_id)
    assert order.error == "The print shop could not print your order."
    assert all("fire" not in e.message for e in events)  # the vendor's text is never shown


def test_without_the_secret_it_is_401_and_nothing_is_recorded(client, submitted_order):
    order_id, vendor = submitted_order
    vendor.mark_failed(order_id, "printer on fire")
    body = webhook("order_failed", order_id, reason="printer on fire")
    before = orders.timeline(order_id)
    assert client.post("/api/webhooks/print", json=body).status_code == 401
    assert client.post("/api/webhooks/print", json=body, params={"token": "guess"}).status_code == 401
    assert client.post("/api/webhooks/print", json=body, headers={"X-Webhook-Signature": "sha256=00"}).status_code == 401
    assert orders.timeline(order_id) == before and orders.get(order_id).status == "submitted"


def test_an_hmac_signed_delivery_is_accepted(client, submitted_order):
    import hashlib
    import hmac
    import json

    order_id, vendor = submitted_order
    vendor.mark_shipped(order_id, "1Z999", "https://track.example/1Z999", "UPS")
    raw = json.dumps(webhook("package_shipped", order_id, shipment={"tracking_number": "1Z999"})).encode()
    signature = "sha256=" + hmac.new(get_settings().resolved_print_webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
    response = client.post("/api/webhooks/print", content=raw, headers={"X-Webhook-Signature": signature, "Content-Type": "application/json"})
    assert response.status_code == 200 and orders.get(order_id).status == "shipped"


def test_a_forged_webhook_does_not_change_the_order(client, submitted_order):
    order_id, _ = submitted_order  # the vendor still says "submitted"
    shipment = {"tracking_number": "FAKE", "carrier": "X"}
    response = post(client, webhook("package_shipped", order_id, shipment=shipment))
    assert response.status_code == 200 and response.json()["order_status"] == "submitted"
    assert orders.get(order_id).tracking_number is None


def test_shipped_confirmed_by_the_vendor_shows_tracking(client, submitted_order):
    order_id, vendor = submitted_order
    vendor.mark_shipped(order_id, "1Z999", "https://track.example/1Z999", "UPS")
    shipment = {"tracking_number": "1Z999", "carrier": "UPS"}
    assert post(client, webhook("package_shipped", order_id, shipment=shipment)).status_code == 200
    order = orders.get(order_id)
    assert order.status == "shipped" and order.tracking_number == "1Z999" and order.tracking_url == "https://track.example/1Z999"


def test_unknown_types_are_ignored_and_bad_bodies_refused(client, submitted_order):
    order_id, _ = submitted_order
    assert post(client, webhook("stock_updated", order_id)).json() == {"result": "ignored"}
    secret = {"token": get_settings().resolved_print_webhook_secret}
    assert client.post("/api/webhooks/print", content=b"not json", params=secret).status_code == 400
    assert post(client, webhook("order_failed", "0" * 32, reason="x")).status_code == 404
