"""Sticker orders over the real stack: three real buddies -> order -> Stripe (the fake) -> sticker DAG -> print vendor.

The happy path: the paid webhook starts the DAG, the sheet is rendered from the generations'
real posters (every QR code decodes to its buddy's share page, CutContour separation, closed cut
paths 2 mm apart, 300 dpi artwork), the local vendor's print shop records printed, then shipped
with the tracking number, in the DAG's form in Airflow's "Required actions" (answered through the
REST API as the UI sends it, as the stack's admin), and the order shows the tracking. The failure
path: the print shop records the failure in the same form, the vendor's webhook arrives three
times, and the payment is refunded at Stripe exactly once.
"""

from __future__ import annotations

import time

import httpx
import pypdfium2 as pdfium
import pytest
from skimage import data

from fulfillment.geometry import MIN_ARTWORK_DPI, MIN_CUT_CLEARANCE_MM
from include.orders import ORDER_DAG_ID
from tests.browser import browser, playwright_driver, screenshot  # noqa: F401  (fixtures)
from tests.e2e.conftest import jpeg_bytes, wait_for_generation
from tests.fulfillment.test_sheet import decode_qr_codes, images_with_dpi, segment_distance, stroked_paths

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG = ORDER_DAG_ID
ADDRESS = {"name": "Ada Lovelace", "address1": "12 St James's Square", "city": "London", "zip": "SW1Y 4JH", "country_code": "GB"}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def buddies(stack, api, make_user) -> tuple[str, list[dict]]:
    """Three real generations of one user: the astronaut, the cat and the coffee cup."""
    key = make_user(tokens=3)
    submitted = []
    for photo, prompt in ((data.astronaut(), "wave hello"), (data.chelsea(), "jump"), (data.coffee(), "dance")):
        response = api.post(
            "/api/generations", headers=auth(key), files={"image": ("photo.jpg", jpeg_bytes(photo), "image/jpeg")}, data={"prompt": prompt}
        )
        assert response.status_code == 202, response.text
        submitted.append(response.json()["id"])
    done = [wait_for_generation(api, key, gid, timeout=600) for gid in submitted]
    assert all(g["status"] == "succeeded" for g in done), [(g["id"], g["status"], g["error"]) for g in done]
    return key, done


def place_and_pay(api, stripe, key: str, generation_ids: list[str], deliveries: int = 1) -> dict:
    placed = api.post(
        "/api/sticker-orders",
        headers=auth(key),
        json={"generation_ids": generation_ids, "sheet_size": "A4", "copies": 1, "shipping_address": ADDRESS},
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "pending_payment" and order["checkout_url"]
    session_id = next(s["id"] for s in stripe.sessions.values() if s["metadata"].get("order_id") == order["id"])
    stripe.complete_session(session_id, deliveries=deliveries)  # the customer paid; Stripe tells the API
    return order


def wait_for_order(api, key: str, order_id: str, statuses: set[str], timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        order = api.get(f"/api/sticker-orders/{order_id}", headers=auth(key)).json()
        if order["status"] in statuses:
            return order
        time.sleep(1)
    raise AssertionError(f"order {order_id} did not reach {statuses} in {timeout} s: {order}")


def print_form_url(stack, order_id: str) -> str:
    return f"{stack.cfg.airflow_url}/api/v2/dags/{DAG}/dagRuns/{order_id}/taskInstances/record_print/-1/hitlDetails"


def open_print_form(stack, order_id: str, headers: dict) -> dict:
    """The order's print form once it waits for an answer."""
    deadline = time.time() + 120
    while True:
        request = httpx.get(print_form_url(stack, order_id), headers=headers, timeout=30)
        if request.status_code == 200 and not request.json()["response_received"]:
            return request.json()
        assert time.time() < deadline, f"order {order_id}: no open print form ({request.status_code} {request.text[:300]})"
        time.sleep(0.5)


def record_print(stack, order_id: str, **answer) -> dict:
    """The print shop answers the order's open form (``record_print``) once it asks; the request."""
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    request = open_print_form(stack, order_id, headers)
    url = print_form_url(stack, order_id)
    form = {"outcome": None, "tracking_number": None, "carrier": None, "tracking_url": None, "reason": None}  # the UI sends every field
    resp = httpx.patch(url, headers=headers, json={"chosen_options": ["OK"], "params_input": form | answer}, timeout=30)
    assert resp.status_code == 200, resp.text
    return request


def show_print_form(stack, browser, order_id: str) -> None:  # noqa: F811
    """The print form as the print shop sees it in Airflow's UI (a screenshot for the README)."""
    token = stack.airflow_token()
    open_print_form(stack, order_id, {"Authorization": f"Bearer {token}"})
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "_token", "value": token, "url": stack.cfg.airflow_url}])
    page = context.new_page()
    try:
        page.goto(f"{stack.cfg.airflow_url}/dags/{DAG}/runs/{order_id}/tasks/record_print/required_actions")
        page.get_by_text("Tracking number").first.wait_for(timeout=60_000)
        screenshot(page, "operator-print-form", full_page=False)
    finally:
        context.close()


def run_state(stack, order_id: str, timeout: float = 120) -> str:
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    deadline = time.time() + timeout
    while True:
        run = httpx.get(f"{stack.cfg.airflow_url}/api/v2/dags/{DAG}/dagRuns/{order_id}", headers=headers).json()
        if run.get("state") in ("success", "failed") or time.time() > deadline:
            return run.get("state")
        time.sleep(1)


def test_an_order_of_real_buddies_is_paid_rendered_printed_and_shipped(stack, api, stripe, buddies, browser):  # noqa: F811
    key, generations = buddies
    order = place_and_pay(api, stripe, key, [g["id"] for g in generations], deliveries=2)
    submitted = wait_for_order(api, key, order["id"], {"submitted", "failed", "refunded"})
    assert submitted["status"] == "submitted", submitted
    assert submitted["payment"] == "stripe"

    pdf = api.get(f"/api/sticker-orders/{order['id']}/sheet.pdf", headers=auth(key))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert b"CutContour" in pdf.content
    page = pdfium.PdfDocument(pdf.content)[0]
    assert sorted(code.text for code in decode_qr_codes(page)) == sorted(g["share_url"] for g in generations)
    cuts = stroked_paths(page)
    assert len(cuts) == len(generations) and all(cut["closed"] for cut in cuts)
    for i, first in enumerate(cuts):
        for second in cuts[i + 1 :]:
            assert segment_distance(first["points"], second["points"]) >= MIN_CUT_CLEARANCE_MM
    assert all(min(dpi) >= MIN_ARTWORK_DPI - 0.5 for dpi in images_with_dpi(page))
    home = api.get(f"/api/sticker-orders/{order['id']}/sheet.pdf", params={"variant": "home"}, headers=auth(key))
    assert home.status_code == 200 and b"CutContour" not in home.content

    show_print_form(stack, browser, order["id"])
    asked = record_print(stack, order["id"], outcome="printed")
    assert "record printed, shipped or failed" in asked["subject"] and set(asked["params"]) == {"outcome", "tracking_number", "carrier", "tracking_url", "reason"}
    wait_for_order(api, key, order["id"], {"printed", "shipped"})
    # Shipped without a tracking number is refused, and the form opens again.
    record_print(stack, order["id"], outcome="shipped")
    record_print(stack, order["id"], outcome="shipped", tracking_number="1Z999AA10123456784", carrier="UPS")
    shipped = wait_for_order(api, key, order["id"], {"shipped"})
    assert shipped["tracking"]["number"] == "1Z999AA10123456784" and shipped["tracking"]["carrier"] == "UPS"
    assert [e["status"] for e in shipped["timeline"] if e["kind"] == "status"] == [
        "pending_payment", "paid", "rendering", "rendered", "submitted", "printed", "shipped",
    ]
    assert run_state(stack, order["id"]) == "success"
    payment_intent = next(s["payment_intent"] for s in stripe.sessions.values() if s["metadata"].get("order_id") == order["id"])
    assert stripe.refunded_amount(payment_intent) == 0


def test_a_failed_print_reported_three_times_is_refunded_once(stack, api, stripe, buddies):
    key, generations = buddies
    order = place_and_pay(api, stripe, key, [generations[0]["id"]])
    wait_for_order(api, key, order["id"], {"submitted", "failed", "refunded"})
    payment_intent = next(s["payment_intent"] for s in stripe.sessions.values() if s["metadata"].get("order_id") == order["id"])

    record_print(stack, order["id"], outcome="failed", reason="the plotter chewed the sheet")
    webhook = {"type": "order_failed", "data": {"reason": "the plotter chewed the sheet", "order": {"external_id": order["id"]}}}
    from include.settings import read_or_create_secret

    secret = read_or_create_secret(stack.cfg.var_dir / "print_webhook_secret")  # the stack's development secret
    assert api.post("/api/webhooks/print", json=webhook).status_code == 401  # without the shared secret
    for _ in range(3):
        assert api.post("/api/webhooks/print", json=webhook, params={"token": secret}).status_code == 200
    refunded = wait_for_order(api, key, order["id"], {"refunded"})
    # The customer reads our words; the vendor's ("plotter") reach only the operator's alert.
    assert refunded["refund_state"] == "refunded" and refunded["error"] == "The print shop could not print your order."
    assert stripe.refunded_amount(payment_intent) == order["amount_cents"]
    assert len([r for r in stripe.refunds.values() if r["payment_intent"] == payment_intent]) == 1
    kinds = [(e["kind"], e["status"]) for e in refunded["timeline"]]
    assert kinds.count(("webhook", "failed")) == 1  # three deliveries of one vendor event
    assert kinds.count(("status", "failed")) == 1 and kinds.count(("status", "refunded")) == 1
    assert run_state(stack, order["id"]) == "failed"
