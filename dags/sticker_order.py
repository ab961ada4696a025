"""
# Fulfil a sticker order

One run per paid order (`dag_run_id` = the order id), triggered by the API once Stripe's webhook
(or, in development, `orders_dev_autopay`) marks the order paid.

**Pipeline.** `plan_sheets` starts the order and lists its sheets -> `render_sheet` (one mapped
task per sheet: the print-shop PDF with the `CutContour` die line and the print-at-home PDF) ->
`store_sheet` joins the sheets into the order's two PDFs -> `send_to_vendor` submits the print
PDF (idempotent per order: a retry finds the job already there) -> `wait_for_print` waits in the
triggerer (no worker held) for the vendor's printed and shipped updates, recording each on the
order's timeline; tracking appears once shipped. With the `local` vendor, `record_print` is where
the person printing reports: a form in Airflow's "Required actions" (printed, shipped with the
tracking number, or failed with the reason) that moves the outbox job `wait_for_print` watches;
for other vendors it skips itself.

**Failure.** A vendor that reports the print failed fails `wait_for_print` at once (no retries).
`settle_order` is a teardown that runs after everything else, whatever happened: an order that
did not ship is refunded in full, exactly once (Stripe idempotency key from the order id), marked
refunded with a message for the customer, and the operator is alerted. Being a teardown it does
not decide the run's state: a failed order's run still ends *failed*.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task


from bitbuddies_airflow.notifiers import RunFailedNotifier
from bitbuddies_airflow.dag_defaults import DB_TIMEOUT, RENDER_TIMEOUT, VENDOR_TIMEOUT, OWNER, owner_links
from bitbuddies_airflow.hooks import StripeHook
from bitbuddies_airflow.print_vendor import RecordPrintOperator, WaitForPrintOperator, print_vendor
from bitbuddies_airflow.storage import open_for_write, provider_url, storage_path
from include import orders
from include.stages import MEDIA_POOL

default_args = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


@dag(
    dag_id=orders.ORDER_DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=64,
    default_args=default_args,
    owner_links=owner_links(),
    # The operator hears of a failed run once (alerts table key), on Pushover.
    on_failure_callback=RunFailedNotifier(),
    tags=["bitbuddies", "fulfillment"],
    doc_md=__doc__,
    params={"order_id": Param(type="string", minLength=32, maxLength=32, description="Sticker order id (from the API)")},
)
def bitbuddies_sticker_order():
    @task(execution_timeout=DB_TIMEOUT)
    def plan_sheets(params=None) -> list[int]:
        """Starts the paid order (status rendering) and lists its sheets, one `render_sheet` each."""
        order = orders.start_rendering(params["order_id"])
        return list(range(1, order.sheet_count + 1))

    # A mapped task does not take its docstring as its doc: doc_md is given.
    @task(
        pool=MEDIA_POOL, execution_timeout=RENDER_TIMEOUT, map_index_template="sheet {{ task.op_kwargs['sheet_number'] }}",
        doc_md="One sheet of the order as two PDF pages: the print shop's (with the `CutContour` die line) and the print-at-home one.",
    )
    def render_sheet(sheet_number: int, params=None) -> dict[str, str]:
        from fulfillment.sheet import render_sheet as render

        order = orders.get(params["order_id"])
        stickers = orders.stickers_for(order, read=lambda key: storage_path(key).read_bytes())
        keys = {}
        for variant in ("print", "home"):
            pdf = render(stickers, order.sheet_size, variant, orders.order_label(order), order.copies, sheet_numbers=[sheet_number])
            keys[variant] = orders.page_key(order.id, sheet_number, variant)
            with open_for_write(keys[variant]) as out:
                out.write(pdf)
        return keys

    @task(execution_timeout=RENDER_TIMEOUT)
    def store_sheet(rendered: list[dict[str, str]], params=None) -> str:
        """Joins the rendered pages into the order's two PDFs and records them on the order."""
        from fulfillment.sheet import join_sheets

        order_id = params["order_id"]
        for variant in ("print", "home"):
            pages = [storage_path(keys[variant]).read_bytes() for keys in sorted(rendered, key=lambda k: k[variant])]
            with open_for_write(orders.sheet_key(order_id, variant)) as out:
                out.write(join_sheets(pages))
        orders.mark_rendered(order_id, orders.sheet_key(order_id), orders.sheet_key(order_id, "home"))
        return orders.sheet_key(order_id)

    @task(retries=6, execution_timeout=VENDOR_TIMEOUT)
    def send_to_vendor(sheet: str, params=None) -> dict:
        """Submits the print PDF to the print vendor, once per order (a retry finds the job already there)."""
        order = orders.get(params["order_id"])
        job = print_vendor().submit(order.id, sheet, orders.shipping_address(order), pdf_url=provider_url(sheet, expires=7 * 86400))
        orders.mark_submitted(order.id, job)
        return job.to_dict()

    wait_for_print = WaitForPrintOperator(task_id="wait_for_print", order_id="{{ params.order_id }}")
    # The local vendor's print shop answers this form in Airflow's "Required actions"; other vendors skip it.
    record_print = RecordPrintOperator(task_id="record_print", order_id="{{ params.order_id }}")

    @task(retries=8, execution_timeout=VENDOR_TIMEOUT)
    def settle_order(params=None) -> str:
        """Compensation, after every other task is done: a paid order that did not ship is refunded once."""
        # Stripe's key comes from the Airflow connection bitbuddies_stripe, not the environment.
        outcome = orders.settle(params["order_id"], "We could not produce your sticker order.", stripe=StripeHook().get_account())
        print(f"Order {params['order_id']}: {outcome}")
        return outcome

    sheets = plan_sheets()
    rendered = render_sheet.expand(sheet_number=sheets)
    stored = store_sheet(rendered)
    sent = send_to_vendor(stored)
    sent >> [wait_for_print, record_print]
    [sheets, rendered, stored, sent, wait_for_print, record_print] >> settle_order().as_teardown()


bitbuddies_sticker_order()
