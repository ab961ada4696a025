"""Sticker orders over the real stack: three real buddies -> order -> Stripe (the fake) -> sticker DAG -> print vendor.

The happy path: the paid webhook starts the DAG, the sheet is rendered from the generations'
real posters (every QR code decodes to its buddy's share page, CutContour separation, closed cut
paths 2 mm apart, 300 dpi artwork), the local vendor's outbox job is moved to printed and shipped
with the vendor CLI, and the order shows the tracking. The failure path: the vendor fails the
job, its webhook arrives three times, and the payment is refunded at Stripe exactly once.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pypdfium2 as pdfium
import pytest
from skimage import data

from fulfillment.geometry import MIN_ARTWORK_DPI, MIN_CUT_CLEARANCE_MM
from include.orders import ORDER_DAG_ID
from ops.stack import environment
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


def local_vendor(stack, *args: str) -> None:
    """The print shop moves the job with the local vendor's CLI, in the stack's environment."""
    subprocess.run([sys.executable, "-m", "api.cli", "print-outbox", *args], env=environment(stack.cfg), check=True, capture_output=True)


def run_state(stack, order_id: str, timeout: float = 120) -> str:
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    deadline = time.time() + timeout
    while True:
        run = httpx.get(f"{stack.cfg.airflow_url}/api/v2/dags/{DAG}/dagRuns/{order_id}", headers=headers).json()
        if run.get("state") in ("success", "failed") or time.time() > deadline:
            return run.get("state")
        time.sleep(1)


def test_an_order_of_real_buddies_is_paid_rendered_printed_and_shipped(stack, api, stripe, buddies):
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

    local_vendor(stack, "printed", order["id"])
    wait_for_order(api, key, order["id"], {"printed", "shipped"})
    local_vendor(stack, "shipped", order["id"], "--tracking", "1Z999AA10123456784", "--carrier", "UPS")
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

    local_vendor(stack, "failed", order["id"], "--reason", "the plotter chewed the sheet")
    webhook = {"type": "order_failed", "data": {"reason": "the plotter chewed the sheet", "order": {"external_id": order["id"]}}}
    for _ in range(3):
        assert api.post("/api/webhooks/print", json=webhook).status_code == 200
    refunded = wait_for_order(api, key, order["id"], {"refunded"})
    assert refunded["refund_state"] == "refunded" and "plotter" in refunded["error"]
    assert stripe.refunded_amount(payment_intent) == order["amount_cents"]
    assert len([r for r in stripe.refunds.values() if r["payment_intent"] == payment_intent]) == 1
    kinds = [(e["kind"], e["status"]) for e in refunded["timeline"]]
    assert kinds.count(("webhook", "failed")) == 3
    assert kinds.count(("status", "failed")) == 1 and kinds.count(("status", "refunded")) == 1
    assert run_state(stack, order["id"]) == "failed"
