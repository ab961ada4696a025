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


def test_a_failure_delivered_three_times_is_recorded_three_times_and_fails_the_order_once(client, submitted_order):
    order_id, vendor = submitted_order
    vendor.mark_failed(order_id, "printer on fire")
    for _ in range(3):
        response = client.post("/api/webhooks/print", json=webhook("order_failed", order_id, reason="printer on fire"))
        assert response.status_code == 200 and response.json()["order_status"] == "failed"
    events = orders.timeline(order_id)
    assert [e.kind for e in events].count("webhook") == 3
    assert [e.status for e in events if e.kind == "status"].count("failed") == 1
    assert "printer on fire" in orders.get(order_id).error


def test_a_forged_webhook_does_not_change_the_order(client, submitted_order):
    order_id, _ = submitted_order  # the vendor still says "submitted"
    shipment = {"tracking_number": "FAKE", "carrier": "X"}
    response = client.post("/api/webhooks/print", json=webhook("package_shipped", order_id, shipment=shipment))
    assert response.status_code == 200 and response.json()["order_status"] == "submitted"
    assert orders.get(order_id).tracking_number is None


def test_shipped_confirmed_by_the_vendor_shows_tracking(client, submitted_order):
    order_id, vendor = submitted_order
    vendor.mark_shipped(order_id, "1Z999", "https://track.example/1Z999", "UPS")
    shipment = {"tracking_number": "1Z999", "carrier": "UPS"}
    assert client.post("/api/webhooks/print", json=webhook("package_shipped", order_id, shipment=shipment)).status_code == 200
    order = orders.get(order_id)
    assert order.status == "shipped" and order.tracking_number == "1Z999" and order.tracking_url == "https://track.example/1Z999"


def test_unknown_types_are_ignored_and_bad_bodies_refused(client, submitted_order):
    order_id, _ = submitted_order
    assert client.post("/api/webhooks/print", json=webhook("stock_updated", order_id)).json() == {"result": "ignored"}
    assert client.post("/api/webhooks/print", content=b"not json").status_code == 400
    assert client.post("/api/webhooks/print", json=webhook("order_failed", "0" * 32, reason="x")).status_code == 404
