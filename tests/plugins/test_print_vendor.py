"""PrintJobTrigger, WaitForPrintOperator and the local vendor's form against the local outbox vendor."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.providers.standard.operators import hitl
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskAwaitingInput, TaskDeferred

from bitbuddies_airflow.print_vendor import PrintJobTrigger, RecordPrintOperator, WaitForPrintOperator
from fulfillment.vendors.base import ShippingAddress
from fulfillment.vendors.local import LocalOutboxVendor
from include.print_vendors import local_outbox_dir
from include import orders
from include.db import session_scope
from include.models import Generation, StickerOrder
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.include.test_orders import ADDRESS


@pytest.fixture
def submitted(fresh_app_db):
    """A paid order whose sheet is at the local vendor (outbox under the test's var dir)."""
    user, _ = make_user()
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt="wave", upload_path="u/p.jpg", status="succeeded", assets={"poster": "p.png"})
        session.add(generation)
    order = orders.create_order(user.id, [generation.id], "A4", 1, ADDRESS)
    orders.mark_paid(order.id, orders.DEV_AUTOPAY, None)
    vendor = LocalOutboxVendor(local_outbox_dir())
    job = vendor.submit(order.id, orders.sheet_key(order.id), ShippingAddress(**ADDRESS))
    orders.mark_submitted(order.id, job)
    return order.id, vendor, job


def first_event(trigger: PrintJobTrigger) -> dict:
    async def run():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(run())


def test_serialize_round_trip(submitted):
    _, _, job = submitted
    trigger = PrintJobTrigger(job.to_dict(), "submitted", 123.0, 0.5)
    path, kwargs = trigger.serialize()
    assert path == "bitbuddies_airflow.print_vendor.PrintJobTrigger"
    assert PrintJobTrigger(**kwargs).serialize() == (path, kwargs)


def test_the_trigger_fires_when_the_vendor_state_changes(submitted):
    order_id, vendor, job = submitted
    threading.Timer(0.2, vendor.mark_printed, args=(order_id,)).start()
    event = first_event(PrintJobTrigger(job.to_dict(), "submitted", time.time() + 10, poll_interval=0.02))
    assert event["status"] == "changed" and event["job"]["state"] == "printed"


def test_the_trigger_rides_out_vendor_errors_until_its_deadline(submitted):
    _, _, job = submitted
    missing = {**job.to_dict(), "order_id": "no-such-order"}
    event = first_event(PrintJobTrigger(missing, "submitted", time.time() + 0.3, poll_interval=0.01))
    assert event["status"] == "timeout" and "no local print job" in event["error"]


def operator(order_id: str) -> WaitForPrintOperator:
    return WaitForPrintOperator(task_id="wait_for_print", order_id=order_id, poll_interval=0.01)


def test_an_unfinished_job_defers_and_a_shipped_one_succeeds_with_tracking(submitted):
    order_id, vendor, _ = submitted
    with pytest.raises(TaskDeferred) as deferred:
        operator(order_id).execute({})
    assert isinstance(deferred.value.trigger, PrintJobTrigger) and deferred.value.trigger.known_state == "submitted"
    deadline = deferred.value.kwargs["deadline"]

    printed = vendor.mark_printed(order_id)
    with pytest.raises(TaskDeferred) as again:
        operator(order_id).execute_complete({}, {"status": "changed", "job": printed.to_dict()}, deadline=deadline)
    assert again.value.trigger.known_state == "printed" and orders.get(order_id).status == "printed"

    shipped = vendor.mark_shipped(order_id, "1Z999", carrier="UPS")
    result = operator(order_id).execute_complete({}, {"status": "changed", "job": shipped.to_dict()}, deadline=deadline)
    assert result["state"] == "shipped"
    order = orders.get(order_id)
    assert order.status == "shipped" and order.tracking_number == "1Z999"


def test_a_failed_print_fails_the_task_without_retries(submitted):
    order_id, vendor, _ = submitted
    vendor.mark_failed(order_id, "paper jam")
    with pytest.raises(AirflowFailException, match="paper jam"):
        operator(order_id).execute({})
    assert orders.get(order_id).status == "failed"


def test_an_order_not_sent_to_a_vendor_cannot_be_waited_for(fresh_app_db):
    user, _ = make_user()
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt="wave", upload_path="u/p.jpg", status="succeeded", assets={"poster": "p.png"})
        session.add(generation)
    order = orders.create_order(user.id, [generation.id], "A4", 1, ADDRESS)
    with pytest.raises(Exception, match="not been sent"):
        operator(order.id).execute(SimpleNamespace())


# -- the local vendor's form (RecordPrintOperator) ------------------------------------------


@pytest.fixture
def asked(monkeypatch):
    """Each request the form writes (Airflow's upsert_hitl_detail, which needs a task runner)."""
    requests = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **request: requests.append(request))
    return requests


def form(order_id: str) -> RecordPrintOperator:
    return RecordPrintOperator(task_id="record_print", order_id=order_id)


def answered(**answer) -> dict:
    params = {"outcome": None, "tracking_number": None, "carrier": None, "tracking_url": None, "reason": None} | answer
    return {"chosen_options": ["OK"], "params_input": params, "responded_at": datetime.now(UTC), "responded_by_user": {"id": "admin", "name": "admin"}}


def context() -> dict:
    return {"task_instance": SimpleNamespace(id="ti-1"), "ti": SimpleNamespace(id="ti-1")}


def test_the_form_asks_until_shipped_with_tracking_and_refuses_what_the_vendor_refuses(submitted, asked):
    order_id, vendor, job = submitted
    with pytest.raises(TaskAwaitingInput):
        form(order_id).execute(context())
    assert "record printed, shipped or failed" in asked[-1]["subject"] and set(asked[-1]["params"]) >= {"outcome", "tracking_number"}

    # Printed: recorded at the vendor, and the form asks again for the shipping.
    with pytest.raises(TaskAwaitingInput):
        form(order_id).execute_complete(context(), answered(outcome="printed"))
    assert vendor.status(job).state.value == "printed" and len(asked) == 2
    # The same answer twice (a form sent twice) changes nothing.
    with pytest.raises(TaskAwaitingInput):
        form(order_id).execute_complete(context(), answered(outcome="printed"))
    assert len(vendor.status(job).detail["history"]) == 2

    # Shipped without tracking: refused, asked again.
    with pytest.raises(TaskAwaitingInput):
        form(order_id).execute_complete(context(), answered(outcome="shipped"))
    assert len(asked) == 4 and vendor.status(job).state.value == "printed"

    result = form(order_id).execute_complete(context(), answered(outcome="shipped", tracking_number="1Z999", carrier="UPS"))
    assert result["state"] == "shipped" and result["tracking_number"] == "1Z999"
    # wait_for_print records it on the order as for any vendor.
    operator(order_id).execute({})
    assert orders.get(order_id).tracking_number == "1Z999"
    # A finished job asks nothing more (e.g. the task cleared in the UI).
    assert form(order_id).execute(context())["state"] == "shipped" and len(asked) == 4


def test_the_form_records_a_failure_and_other_vendors_skip_it(submitted, asked):
    order_id, vendor, job = submitted
    assert form(order_id).execute_complete(context(), answered(outcome="failed", reason="paper jam"))["state"] == "failed"
    assert vendor.status(job).error == "paper jam"
    with pytest.raises(AirflowFailException, match="paper jam"):
        operator(order_id).execute({})
    with session_scope() as session:
        session.get(StickerOrder, order_id).vendor = "printful"
    with pytest.raises(AirflowSkipException):
        form(order_id).execute(context())
