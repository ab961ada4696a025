"""Sticker order lifecycle: placing, paying once, forward-only transitions with a timeline, refunds once."""

from __future__ import annotations

import pytest

from fulfillment.vendors.base import VendorEvent, VendorJob, VendorJobState
from include import alerts as alerts_module
from include import orders
from include.airflow_client import AirflowClient
from include.db import session_scope
from include.models import Generation
from tests.api.fake_airflow import FakeAirflow
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.fakes.stripe_server import stripe_fake  # noqa: F401  (fixture)

ADDRESS = {"name": "Ada Lovelace", "address1": "12 St James's Square", "city": "London", "zip": "SW1Y 4JH", "country_code": "GB"}


def finished_generation(user_id: int, status: str = "succeeded") -> str:
    with session_scope() as session:
        generation = Generation(user_id=user_id, prompt="wave", upload_path="uploads/x/photo.jpg", status=status)
        if status == "succeeded":
            generation.assets = {"poster": f"generations/{generation.id}/poster.png"}
        session.add(generation)
    return generation.id


@pytest.fixture
def user(fresh_app_db):
    return make_user("ada@example.com")[0]


@pytest.fixture
def order(user):
    return orders.create_order(user.id, [finished_generation(user.id), finished_generation(user.id)], "A4", 2, ADDRESS)


@pytest.fixture
def fake_airflow():
    server = FakeAirflow().start()
    yield server
    server.stop()


def statuses(order_id: str) -> list[str]:
    return [event.status for event in orders.timeline(order_id) if event.kind == "status"]


def vendor_job(order_id: str, state: VendorJobState, **fields) -> VendorJob:
    return VendorJob(vendor="local", order_id=order_id, job_id=f"local-{order_id}", state=state, **fields)


def paid_order(order) -> str:
    orders.mark_paid(order.id, "stripe", "pi_123")
    return order.id


# -- placing -------------------------------------------------------------------------------


def test_an_order_is_priced_per_sheet_and_waits_for_payment(order, monkeypatch):
    assert order.status == "pending_payment"
    assert order.sheet_count == 1 and order.amount_cents == 900 and order.currency == "usd"
    assert order.shipping_address["country_code"] == "GB"
    assert statuses(order.id) == ["pending_payment"]


def test_only_the_users_own_finished_buddies_can_be_ordered(user):
    other = make_user("eve@example.com")[0]
    with pytest.raises(orders.OrderRejected, match="not found"):
        orders.create_order(user.id, [finished_generation(other.id)], "A4", 1, ADDRESS)
    with pytest.raises(orders.OrderRejected, match="not finished"):
        orders.create_order(user.id, [finished_generation(user.id, status="running")], "A4", 1, ADDRESS)
    with pytest.raises(orders.OrderRejected, match="Sheet size"):
        orders.create_order(user.id, [finished_generation(user.id)], "A3", 1, ADDRESS)
    with pytest.raises(orders.OrderRejected, match="shipping address"):
        orders.create_order(user.id, [finished_generation(user.id)], "A4", 1, {**ADDRESS, "city": " "})


def test_the_same_idempotency_key_places_one_order(user):
    gid = finished_generation(user.id)
    first = orders.create_order(user.id, [gid], "Letter", 1, ADDRESS, idempotency_key="k1")
    again = orders.create_order(user.id, [gid], "Letter", 1, ADDRESS, idempotency_key="k1")
    assert again.id == first.id


def test_many_copies_take_more_sheets_and_cost_more(user):
    order = orders.create_order(user.id, [finished_generation(user.id)], "A4", 20, ADDRESS)
    assert order.sheet_count >= 2 and order.amount_cents == order.sheet_count * 900


# -- paying --------------------------------------------------------------------------------


def checkout_session(order, **overrides) -> dict:
    return {
        "id": "cs_test_1",
        "object": "checkout.session",
        "payment_status": "paid",
        "payment_intent": "pi_abc",
        "amount_total": order.amount_cents,
        "client_reference_id": order.id,
        "metadata": {"kind": "sticker_order", "order_id": order.id},
        **overrides,
    }


def test_checkout_completed_marks_paid_once_and_triggers_the_run_once(order, fake_airflow):
    with AirflowClient(base_url=fake_airflow.url, username="admin", password="admin") as client:
        for _ in range(3):  # Stripe delivers webhooks at least once
            paid = orders.on_checkout_completed(checkout_session(order), client)
    assert paid.status == "paid" and paid.payment_provider == "stripe" and paid.payment_reference == "pi_abc"
    assert paid.triggered_at is not None
    assert list(fake_airflow.runs) == [(orders.ORDER_DAG_ID, order.id)]
    assert fake_airflow.trigger_attempts == [order.id]
    assert statuses(order.id) == ["pending_payment", "paid"]


def test_checkout_of_something_else_or_unpaid_changes_nothing(order, fake_airflow):
    assert orders.on_checkout_completed(checkout_session(order, metadata={"kind": "tokens"})) is None
    assert orders.on_checkout_completed(checkout_session(order, payment_status="unpaid")) is None
    with pytest.raises(ValueError, match="costs"):
        orders.on_checkout_completed(checkout_session(order, amount_total=1))
    assert orders.get(order.id).status == "pending_payment"


def test_a_paid_order_whose_trigger_failed_is_left_for_the_trigger_loop(order):
    with AirflowClient(base_url="http://127.0.0.1:9", username="admin", password="admin", timeout=1) as down:
        orders.on_checkout_completed(checkout_session(order), down)
    assert [o.id for o in orders.OUTBOX.pending()] == [order.id]
    orders.OUTBOX.mark_triggered(order.id)
    assert orders.OUTBOX.pending() == []


def test_dev_autopay_is_explicit_and_refused_in_production(order, monkeypatch):
    from include.settings import get_settings

    with pytest.raises(RuntimeError, match="orders_dev_autopay is off"):
        orders.autopay(order.id)
    monkeypatch.setenv("BITBUDDIES_ORDERS_DEV_AUTOPAY", "true")
    monkeypatch.setenv("BITBUDDIES_ENVIRONMENT", "production")
    get_settings.cache_clear()
    with pytest.raises(RuntimeError, match="production"):
        orders.autopay(order.id)
    monkeypatch.setenv("BITBUDDIES_ENVIRONMENT", "development")
    get_settings.cache_clear()
    paid = orders.autopay(order.id)
    assert paid.status == "paid" and paid.payment_provider == orders.DEV_AUTOPAY
    assert "development setting" in orders.timeline(order.id)[-1].message


# -- the DAG's reports ---------------------------------------------------------------------


def test_nothing_is_rendered_before_payment(order):
    with pytest.raises(orders.OrderRejected):
        orders.start_rendering(order.id)


def test_transitions_move_forward_once_with_their_timeline(order):
    order_id = paid_order(order)
    for _ in range(2):  # a retried task repeats every report
        orders.start_rendering(order_id)
        orders.mark_rendered(order_id, orders.sheet_key(order_id), orders.sheet_key(order_id, "home"))
        orders.mark_submitted(order_id, vendor_job(order_id, VendorJobState.SUBMITTED))
        orders.record_vendor_state(order_id, vendor_job(order_id, VendorJobState.PRINTED))
        orders.record_vendor_state(
            order_id, vendor_job(order_id, VendorJobState.SHIPPED, tracking_number="1Z999", carrier="UPS", tracking_url="https://t/1Z999")
        )
    # A late "printed" poll after shipping does not move the order back.
    orders.record_vendor_state(order_id, vendor_job(order_id, VendorJobState.PRINTED))
    shipped = orders.get(order_id)
    assert shipped.status == "shipped" and shipped.tracking_number == "1Z999" and shipped.carrier == "UPS"
    assert shipped.vendor == "local" and shipped.sheet_key == f"orders/{order_id}/sheet.pdf"
    assert statuses(order_id) == ["pending_payment", "paid", "rendering", "rendered", "submitted", "printed", "shipped"]
    assert "1Z999" in orders.timeline(order_id)[-1].message
    assert orders.settle(order_id) == "shipped: nothing to settle"


def test_every_webhook_delivery_is_recorded_but_the_status_changes_once(order):
    order_id = paid_order(order)
    orders.mark_submitted(order_id, vendor_job(order_id, VendorJobState.SUBMITTED))
    event = VendorEvent(vendor="printful", kind="order_failed", order_id=order_id, state=VendorJobState.FAILED, reason="paper jam")
    for _ in range(3):
        orders.record_webhook(event, vendor_job(order_id, VendorJobState.FAILED, error="paper jam"))
    events = orders.timeline(order_id)
    assert [e.kind for e in events].count("webhook") == 3
    assert statuses(order_id).count("failed") == 1
    assert "paper jam" in orders.get(order_id).error


# -- settling ------------------------------------------------------------------------------


def paid_through_stripe(order, stripe_fake) -> dict:
    """The customer pays the order's checkout at the Stripe fake; the webhook's session marks it paid."""
    order = orders.start_checkout(order, "ada@example.com")
    session = stripe_fake.complete_session(order.checkout_session_id, deliveries=0)["data"]["object"]
    with AirflowClient(base_url="http://127.0.0.1:9", username="a", password="a", timeout=1) as airflow_down:
        orders.on_checkout_completed(session, airflow_down)
    return session


def refund_requests(stripe_fake) -> list[tuple[str, str, str | None]]:
    return [request for request in stripe_fake.requests if request[1] == "/v1/refunds"]


def test_checkout_is_opened_once_for_the_orders_price(order, stripe_fake):
    opened = orders.start_checkout(order, "ada@example.com")
    again = orders.start_checkout(orders.get(order.id), "ada@example.com")
    session = stripe_fake.sessions[opened.checkout_session_id]
    assert again.checkout_session_id == opened.checkout_session_id and len(stripe_fake.sessions) == 1
    assert session["amount_total"] == order.amount_cents and session["metadata"]["order_id"] == order.id
    assert opened.checkout_url == session["url"]


def test_a_failed_print_is_refunded_exactly_once(order, stripe_fake, caplog):
    session = paid_through_stripe(order, stripe_fake)
    order_id = order.id
    orders.mark_submitted(order_id, vendor_job(order_id, VendorJobState.SUBMITTED))
    orders.record_vendor_state(order_id, vendor_job(order_id, VendorJobState.FAILED, error="out of vinyl"))
    results = [orders.settle(order_id) for _ in range(3)]
    assert results[0].startswith("refunded") and all(r.startswith("already refunded") for r in results[1:])
    assert stripe_fake.refunded_amount(session["payment_intent"]) == order.amount_cents
    assert [r[2] for r in refund_requests(stripe_fake)] == [orders.refund_key(order_id)]
    refunded = orders.get(order_id)
    assert refunded.status == "refunded" and refunded.refund_state == "refunded"
    assert refunded.refund_reference in stripe_fake.refunds
    assert statuses(order_id)[-2:] == ["failed", "refunded"]
    alerts = [a for a in alerts_module.recent() if a.kind == "sticker_order_failed"]
    assert len(alerts) == 1 and order_id in alerts[0].message and "out of vinyl" in alerts[0].message


def test_a_refund_interrupted_before_it_was_recorded_is_retried_under_the_same_key(order, stripe_fake, monkeypatch):
    session = paid_through_stripe(order, stripe_fake)
    order_id = order.id
    real_advance = orders._advance

    def crash_on_refunded(db_session, order_row, status, message):
        if status == "refunded":
            raise KeyboardInterrupt("killed after Stripe refunded, before the DB recorded it")
        return real_advance(db_session, order_row, status, message)

    monkeypatch.setattr(orders, "_advance", crash_on_refunded)
    with pytest.raises(KeyboardInterrupt):
        orders.settle(order_id, "The sheet could not be rendered.")
    assert orders.get(order_id).refund_state == "none"
    monkeypatch.setattr(orders, "_advance", real_advance)
    assert orders.settle(order_id).startswith("refunded")
    # Asked twice under one idempotency key: Stripe replayed the first refund, the money moved once.
    assert [r[2] for r in refund_requests(stripe_fake)] == [orders.refund_key(order_id)] * 2
    assert len(stripe_fake.refunds) == 1
    assert stripe_fake.refunded_amount(session["payment_intent"]) == order.amount_cents
    assert orders.get(order_id).error == "The sheet could not be rendered."


def test_dev_autopay_orders_are_refunded_without_a_provider(order, monkeypatch):
    orders.mark_paid(order.id, orders.DEV_AUTOPAY, None)
    assert orders.settle(order.id) == f"refunded ({orders.DEV_AUTOPAY}:{order.id})"
    assert orders.get(order.id).status == "refunded"


def test_an_unpaid_order_is_never_refunded(order):
    assert orders.settle(order.id) == "never paid: nothing to refund"
    assert orders.get(order.id).status == "pending_payment"


def test_the_trigger_loop_starts_paid_orders_left_behind(order, fake_airflow):
    orders.mark_paid(order.id, "stripe", "pi_1")
    with AirflowClient(base_url=fake_airflow.url, username="admin", password="admin") as client:
        assert orders.OUTBOX.trigger_pending(client) == 1
        assert orders.OUTBOX.trigger_pending(client) == 0
    assert list(fake_airflow.runs) == [(orders.ORDER_DAG_ID, order.id)]
