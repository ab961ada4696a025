"""``/api/sticker-orders``: placing (autopay in development, refused without payments), reading, the sheet PDF."""

from __future__ import annotations

import pytest

from fulfillment.vendors.base import VendorJob, VendorJobState
from include import orders, storage
from include.db import session_scope
from include.models import Generation
from include.settings import get_settings
from tests.api.support import auth, make_user
from tests.fakes.stripe_server import stripe_fake  # noqa: F401  (fixture)

ADDRESS = {"name": "Ada Lovelace", "address1": "12 St James's Square", "city": "London", "zip": "SW1Y 4JH", "country_code": "GB"}


def finished_generation(user_id: int) -> str:
    with session_scope() as session:
        generation = Generation(user_id=user_id, prompt="wave", upload_path="uploads/x/photo.jpg", status="succeeded")
        generation.assets = {"poster": f"generations/{generation.id}/poster.png"}
        session.add(generation)
    return generation.id


@pytest.fixture
def autopay(monkeypatch, fresh_app_db):
    monkeypatch.setenv("BITBUDDIES_ORDERS_DEV_AUTOPAY", "true")
    get_settings.cache_clear()


@pytest.fixture
def ada(fresh_app_db):
    user, key = make_user("ada@example.com")
    return user, key


def place(client, key: str, generation_ids: list[str], **extra):
    body = {"generation_ids": generation_ids, "sheet_size": "A4", "copies": 2, "shipping_address": ADDRESS, **extra}
    return client.post("/api/sticker-orders", json=body, headers=auth(key))


def test_without_payments_or_autopay_ordering_is_refused(client, ada):
    user, key = ada
    response = place(client, key, [finished_generation(user.id)])
    assert response.status_code == 503 and "payments are not configured" in response.json()["detail"]


def test_development_autopay_pays_at_once_and_starts_the_dag(client, autopay, ada, fake_airflow):
    user, key = ada
    response = place(client, key, [finished_generation(user.id), finished_generation(user.id)])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "paid" and body["payment"] == "dev_autopay"
    assert body["checkout_url"] is None and body["sheet_url"] is None and body["tracking"] is None
    assert [event["status"] for event in body["timeline"]] == ["pending_payment", "paid"]
    assert "orders_dev_autopay" in body["timeline"][-1]["message"]
    assert (orders.ORDER_DAG_ID, body["id"]) in fake_airflow.runs
    assert fake_airflow.runs[(orders.ORDER_DAG_ID, body["id"])]["conf"] == {"order_id": body["id"]}


def test_the_same_idempotency_key_answers_with_the_same_order(client, autopay, ada, fake_airflow):
    user, key = ada
    gid = finished_generation(user.id)
    body = {"generation_ids": [gid], "sheet_size": "Letter", "copies": 1, "shipping_address": ADDRESS}
    first = client.post("/api/sticker-orders", json=body, headers={**auth(key), "Idempotency-Key": "abc"}).json()
    second = client.post("/api/sticker-orders", json=body, headers={**auth(key), "Idempotency-Key": "abc"}).json()
    assert first["id"] == second["id"] and fake_airflow.trigger_attempts == [first["id"]]


def test_someone_elses_buddy_or_a_bad_request_is_refused(client, autopay, ada):
    user, key = ada
    other, _ = make_user("eve@example.com")
    assert place(client, key, [finished_generation(other.id)]).status_code == 422
    assert place(client, key, [finished_generation(user.id)], sheet_size="A3").status_code == 422
    assert place(client, key, [finished_generation(user.id)], copies=0).status_code == 422
    assert place(client, key, []).status_code == 422
    assert client.post("/api/sticker-orders", json={}).status_code == 401


def test_an_order_shows_its_timeline_and_tracking_to_its_owner_only(client, autopay, ada):
    user, key = ada
    order_id = place(client, key, [finished_generation(user.id)]).json()["id"]
    orders.mark_submitted(order_id, VendorJob("local", order_id, f"local-{order_id}", VendorJobState.SUBMITTED))
    orders.record_vendor_state(
        order_id, VendorJob("local", order_id, f"local-{order_id}", VendorJobState.SHIPPED, tracking_number="1Z9", carrier="UPS")
    )
    body = client.get(f"/api/sticker-orders/{order_id}", headers=auth(key)).json()
    assert body["status"] == "shipped"
    assert body["tracking"] == {"carrier": "UPS", "number": "1Z9", "url": None}
    assert [event["status"] for event in body["timeline"]][-1] == "shipped"
    _, eve_key = make_user("eve@example.com")
    assert client.get(f"/api/sticker-orders/{order_id}", headers=auth(eve_key)).status_code == 404
    assert client.get("/api/sticker-orders/nope", headers=auth(key)).status_code == 404


def test_the_sheet_downloads_once_rendered_in_both_variants(client, autopay, ada):
    user, key = ada
    order_id = place(client, key, [finished_generation(user.id)]).json()["id"]
    url = f"/api/sticker-orders/{order_id}/sheet.pdf"
    assert client.get(url, headers=auth(key)).status_code == 404
    for variant, content in (("print", b"%PDF-1.4 print"), ("home", b"%PDF-1.4 home")):
        with storage.open_write(orders.sheet_key(order_id, variant)) as out:
            out.write(content)
    orders.start_rendering(order_id)
    orders.mark_rendered(order_id, orders.sheet_key(order_id), orders.sheet_key(order_id, "home"))
    printed = client.get(url, headers=auth(key))
    assert printed.status_code == 200 and printed.headers["content-type"] == "application/pdf"
    assert printed.content == b"%PDF-1.4 print"
    assert client.get(url, params={"variant": "home"}, headers=auth(key)).content == b"%PDF-1.4 home"
    assert client.get(url, params={"variant": "poster"}, headers=auth(key)).status_code == 422
    _, eve_key = make_user("eve@example.com")
    assert client.get(url, headers=auth(eve_key)).status_code == 404
    body = client.get(f"/api/sticker-orders/{order_id}", headers=auth(key)).json()
    assert body["sheet_url"].endswith(url) and body["home_sheet_url"].endswith(url + "?variant=home")


def test_with_stripe_the_order_waits_for_the_checkout_webhook(client, ada, fake_airflow, stripe_fake, monkeypatch):
    user, key = ada
    # The Stripe webhook route starts the run with a client from the settings: point them at the fake.
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_URL", fake_airflow.url)
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_USERNAME", "admin")  # the fake's user
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_PASSWORD", "admin")
    get_settings.cache_clear()
    stripe_fake.webhook_sender = lambda body, headers: client.post("/api/webhooks/stripe", content=body, headers=headers).status_code
    placed = place(client, key, [finished_generation(user.id)])
    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert body["status"] == "pending_payment" and body["checkout_url"].startswith("http")
    assert fake_airflow.runs == {}
    session_id = orders.get(body["id"]).checkout_session_id
    stripe_fake.complete_session(session_id, deliveries=3)
    paid = client.get(f"/api/sticker-orders/{body['id']}", headers=auth(key)).json()
    assert paid["status"] == "paid" and paid["payment"] == "stripe" and paid["checkout_url"] is None
    assert fake_airflow.trigger_attempts == [body["id"]]
