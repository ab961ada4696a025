"""The sticker DAG reads as the fulfilment: mapped renders, store, send, deferrable wait, settle teardown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from bitbuddies_airflow.print_vendor import WaitForPrintOperator
from fulfillment.vendors.base import VendorJobState
from include import orders
from include.orders import ORDER_DAG_ID
from include.payments import PaymentsNotConfigured
from include.settings import get_settings
from tests.api.support import fresh_app_db  # noqa: F401  (fixture)
from tests.fakes.stripe_server import stripe_fake  # noqa: F401  (fixture)
from tests.include.test_orders import order, paid_through_stripe, user, vendor_job  # noqa: F401  (fixtures)

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "sticker_order.py"


@pytest.fixture(scope="module")
def dag():
    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[ORDER_DAG_ID]


def test_the_pipeline_order(dag):
    assert set(dag.params) == {"order_id"}
    order = ["plan_sheets", "render_sheet", "store_sheet", "send_to_vendor", "wait_for_print"]
    for up, down in zip(order, order[1:]):
        assert down in dag.get_task(up).downstream_task_ids, f"{up} -> {down}"
    assert type(dag.get_task("render_sheet")).__name__.endswith("MappedOperator"), "one render task per sheet"
    assert dag.get_task("render_sheet").partial_kwargs.get("pool") == "media_cpu"
    assert isinstance(dag.get_task("wait_for_print"), WaitForPrintOperator)


def test_settle_covers_every_task_and_does_not_decide_the_run(dag):
    settle = dag.get_task("settle_order")
    assert settle.is_teardown and not settle.on_failure_fail_dagrun
    assert settle.retries >= 3
    assert {t.task_id for t in dag.tasks} - {"settle_order"} <= settle.upstream_task_ids
    leaves = {t.task_id for t in dag.tasks if not (t.downstream_task_ids - {"settle_order"})} - {"settle_order"}
    assert leaves == {"wait_for_print", "record_print"}


# --- secrets: the task's Stripe key is the Airflow connection's ---------------------------------

STRIPE_SETTINGS = ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "BITBUDDIES_STRIPE_API_BASE")


def failed_order_paid_through_stripe(order, stripe_fake) -> dict:
    session = paid_through_stripe(order, stripe_fake)  # the API's side, with its settings
    orders.mark_submitted(order.id, vendor_job(order.id, VendorJobState.SUBMITTED))
    orders.record_vendor_state(order.id, vendor_job(order.id, VendorJobState.FAILED, error="out of vinyl"))
    return session


def test_settle_order_refunds_with_the_stripe_connection_not_the_environment(dag, order, stripe_fake, monkeypatch):
    session = failed_order_paid_through_stripe(order, stripe_fake)
    # An Airflow worker: no Stripe settings in its environment, only the connection.
    for name in STRIPE_SETTINGS:
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    connection = {"conn_type": "generic", "password": stripe_fake.api_key, "extra": {"api_base": stripe_fake.url}}
    monkeypatch.setenv("AIRFLOW_CONN_BITBUDDIES_STRIPE", json.dumps(connection))
    outcome = dag.get_task("settle_order").python_callable(params={"order_id": order.id})
    assert outcome.startswith("refunded")
    # The fake answers only requests with its key as bearer: the refund carried the connection's.
    assert stripe_fake.refunded_amount(session["payment_intent"]) == order.amount_cents
    assert orders.get(order.id).refund_state == "refunded"


def test_settle_order_ignores_stripe_settings_in_the_environment(dag, order, stripe_fake, monkeypatch):
    session = failed_order_paid_through_stripe(order, stripe_fake)
    # The settings are set (stripe_fake points them at the fake) but there is no connection.
    monkeypatch.delenv("AIRFLOW_CONN_BITBUDDIES_STRIPE", raising=False)
    with pytest.raises(PaymentsNotConfigured):
        dag.get_task("settle_order").python_callable(params={"order_id": order.id})
    assert stripe_fake.refunded_amount(session["payment_intent"]) == 0
    assert orders.get(order.id).refund_state != "refunded"
