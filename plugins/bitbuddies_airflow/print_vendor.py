"""Waiting for the print vendor without holding a worker: ``PrintJobTrigger`` and ``WaitForPrintOperator``;
the local vendor's form: ``RecordPrintOperator``.

The trigger polls ``vendor.status`` (read-only, so a triggerer failover running it twice is
harmless) until the job's state differs from the one the operator last recorded, then fires.
The operator records every state on the order (printed, shipped with tracking, failed) and
defers again until the job is shipped (success) or failed (the task fails without retries and
the DAG's settle teardown refunds). Its arguments are only the job and an absolute deadline.
:func:`print_vendor` is the vendor of the DAG's tasks: Printful's token comes from the Airflow
connection ``bitbuddies_printful``.

``RecordPrintOperator`` is how the person printing for the ``local`` vendor reports: an Airflow
human-in-the-loop entry form (``HITLEntryOperator``, in the UI's "Required actions") with the
outcome (printed, shipped, failed), the tracking number, carrier and link, or the reason. Each
answer moves the outbox job through the vendor's own transitions (``fulfillment/vendors/local.py``:
re-recording a state changes nothing, an impossible move is refused and the form opens again, the
reason in the task's log); ``wait_for_print`` then records it on the order as for any vendor. After
"printed" the form opens again for the shipping. For other vendors the task skips itself.

Airflow keeps one request per task instance: asking again only clears the answer (the execution
API's upsert keeps the first subject and body), so the form's text is written once and does not
depend on the job's state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLEntryOperator
from airflow.sdk import BaseOperator, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from bitbuddies_airflow.hooks import PrintfulHook
from fulfillment.vendors import PrintVendor, VendorError, VendorJob, VendorJobState
from fulfillment.vendors.local import VENDOR_NAME as LOCAL_VENDOR
from include.print_vendors import get_vendor
from include.settings import get_settings

MAX_BACKOFF_SECONDS = 300.0


def print_vendor(name: str | None = None) -> PrintVendor:
    """The vendor ``name`` (a job's own), else the configured one; Printful with the account of the
    Airflow connection ``bitbuddies_printful``."""
    chosen = name or get_settings().print_vendor
    return get_vendor(chosen, printful=PrintfulHook().get_account() if chosen == "printful" else None)


async def aprint_vendor(name: str) -> PrintVendor:
    """:func:`print_vendor` for the triggerer (the connection read without blocking its loop)."""
    return get_vendor(name, printful=await PrintfulHook.aget_account() if name == "printful" else None)


class PrintJobTrigger(BaseTrigger):
    def __init__(self, job: dict, known_state: str, deadline: float, poll_interval: float = 60.0):
        super().__init__()
        self.job = job
        self.known_state = known_state
        self.deadline = deadline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"job": self.job, "known_state": self.known_state, "deadline": self.deadline, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        job = VendorJob.from_dict(self.job)
        vendor = await aprint_vendor(job.vendor)
        failures = 0
        last_error = ""
        while time.time() < self.deadline:
            try:
                # Vendors are synchronous clients (a file read, or HTTP with its own retries).
                current = await asyncio.to_thread(vendor.status, job)
            except VendorError as error:
                failures += 1
                last_error = str(error)
                self.log.warning("Print job %s: status failed (%d in a row): %s", job.job_id, failures, error)
                await asyncio.sleep(min(MAX_BACKOFF_SECONDS, self.poll_interval * 2 ** min(failures, 8)))
                continue
            failures = 0
            if current.state.value != self.known_state:
                yield TriggerEvent({"status": "changed", "job": current.to_dict()})
                return
            await asyncio.sleep(self.poll_interval)
        yield TriggerEvent({"status": "timeout", "error": f"the print vendor did not finish before the deadline {last_error}".strip()})


class WaitForPrintOperator(BaseOperator):
    """Wait (deferred) until the order's print job is shipped or failed, recording each state on the order."""

    template_fields = ("order_id",)
    ui_color = "#fde2c8"

    def __init__(self, *, order_id: str, poll_interval: float | None = None, wait_timeout: timedelta | None = None, **kwargs: Any):
        kwargs.setdefault(
            "doc_md",
            "Waits in the triggerer (no worker held) until the print vendor ships the order or fails it, "
            "recording each state on the order's timeline (`print_wait_days` at most).",
        )
        super().__init__(**kwargs)
        self.order_id = order_id
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context) -> dict[str, Any]:
        from include import orders

        order = orders.get(self.order_id)
        if not order.vendor or not order.vendor_job_id:
            raise AirflowException(f"order {self.order_id} has not been sent to a print vendor")
        job = VendorJob(vendor=order.vendor, order_id=order.id, job_id=order.vendor_job_id, state=VendorJobState.SUBMITTED)
        current = print_vendor(job.vendor).status(job)
        return self._handle(current, deadline=time.time() + self._timeout().total_seconds())

    def execute_complete(self, context, event: dict[str, Any] | None = None, deadline: float | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "changed":
            raise AirflowException(f"waiting for the print vendor: {(event or {}).get('error') or 'no event'}")
        return self._handle(VendorJob.from_dict(event["job"]), deadline=deadline or time.time() + self._timeout().total_seconds())

    def _handle(self, job: VendorJob, deadline: float) -> dict[str, Any]:
        from include import orders

        orders.record_vendor_state(self.order_id, job)
        self.log.info("Order %s: the vendor reports %s", self.order_id, job.state.value)
        if job.state is VendorJobState.SHIPPED:
            return job.to_dict()
        if job.state is VendorJobState.FAILED:
            # A business outcome, not a glitch: no retries; the settle teardown refunds.
            raise AirflowFailException(f"the print vendor failed order {self.order_id}: {job.error or 'no reason given'}")
        remaining = deadline - time.time()
        if remaining <= 0:
            raise AirflowException(f"order {self.order_id} was not shipped before its deadline")
        self.defer(
            trigger=PrintJobTrigger(job.to_dict(), job.state.value, deadline, self._poll_interval()),
            method_name="execute_complete",
            kwargs={"deadline": deadline},
            timeout=timedelta(seconds=remaining) + timedelta(minutes=5),
        )

    def _poll_interval(self) -> float:
        return self.poll_interval if self.poll_interval is not None else get_settings().print_poll_seconds

    def _timeout(self) -> timedelta:
        return self.wait_timeout or timedelta(days=get_settings().print_wait_days)


# The form the local vendor's print shop fills in (validated by Airflow like a trigger form). Null
# rather than empty strings: Airflow's forms count "" as a missing value.
PRINT_FORM = {
    "outcome": Param(
        "shipped", type="string", enum=[s.value for s in VendorJobState if s is not VendorJobState.SUBMITTED], title="What happened",
        values_display={"printed": "printed (not shipped yet)", "shipped": "shipped", "failed": "cannot be printed (refund)"},
    ),
    "tracking_number": Param(None, type=["null", "string"], maxLength=100, title="Tracking number", description="Needed for shipped."),
    "carrier": Param(None, type=["null", "string"], maxLength=100, title="Carrier"),
    "tracking_url": Param(None, type=["null", "string"], pattern=r"^https?://\S+$", title="Tracking link"),
    "reason": Param(None, type=["null", "string"], maxLength=500, title="Why it failed", description="Needed for failed; the operator reads it, the customer does not."),
}


class RecordPrintOperator(HITLEntryOperator):
    """The local vendor's print shop records printed / shipped / failed in a form; other vendors skip."""

    template_fields = (*HITLEntryOperator.template_fields, "order_id")
    ui_color = "#ffe08a"

    def __init__(self, *, order_id: str, **kwargs: Any) -> None:
        kwargs.setdefault(
            "doc_md",
            "The local vendor's print shop reports here, under **Required actions**: printed, shipped "
            "with the tracking number, or cannot be printed with the reason. Each answer moves the "
            "print outbox job; `wait_for_print` records it on the order. Other vendors skip this task.",
        )
        super().__init__(subject="Print job", **(kwargs | {"params": PRINT_FORM}))
        self.order_id = order_id

    def execute(self, context):
        from include import orders

        order = orders.get(self.order_id)
        if order.vendor != LOCAL_VENDOR:
            raise AirflowSkipException(f"order {self.order_id} is printed by {order.vendor or 'no vendor'}, which reports by itself")
        if not order.vendor_job_id:
            raise AirflowException(f"order {self.order_id} has not been sent to a print vendor")
        job = get_vendor(LOCAL_VENDOR).status(VendorJob(vendor=LOCAL_VENDOR, order_id=order.id, job_id=order.vendor_job_id, state=VendorJobState.SUBMITTED))
        if job.state.is_terminal():
            return job.to_dict()
        if self.response_timeout is None:
            self.response_timeout = self._timeout()
        self.subject = f"Print order {orders.order_label(order)}: record printed, shipped or failed"
        self.body = _form_body(order, job)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        answer = super().execute_complete(context, event)["params_input"]
        vendor = get_vendor(LOCAL_VENDOR)
        outcome = VendorJobState(answer.get("outcome"))
        try:
            if outcome is VendorJobState.PRINTED:
                job = vendor.mark_printed(self.order_id)
            elif outcome is VendorJobState.SHIPPED:
                job = vendor.mark_shipped(self.order_id, answer.get("tracking_number") or "", answer.get("tracking_url") or "", answer.get("carrier") or "")
            else:
                job = vendor.mark_failed(self.order_id, answer.get("reason") or "")
        except VendorError as error:
            self.log.warning("Order %s: the answer was refused (%s); asking again", self.order_id, error)
            return self.execute(context)
        self.log.info("Order %s: recorded %s at the local vendor", self.order_id, job.state.value)
        if job.state is VendorJobState.FAILED:
            # wait_for_print records it on the order and fails; the settle teardown refunds.
            return job.to_dict()
        if job.state is not VendorJobState.SHIPPED:
            return self.execute(context)  # printed: ask again for the shipping
        return job.to_dict()

    def _timeout(self) -> timedelta:
        from include.settings import get_settings

        return timedelta(days=get_settings().print_wait_days)


def _form_body(order, job: VendorJob) -> str:
    from include import orders

    address = orders.shipping_address(order)
    lines = [
        f"**Order {orders.order_label(order)}**: {order.sheet_count} sheet(s) of {order.sheet_size}, {order.copies} cop{'y' if order.copies == 1 else 'ies'}.",
        f"Print PDF: `{job.detail.get('pdf_key', '')}` in storage. Ship to: {address.name}, {address.address1}, {address.zip} {address.city}, {address.country_code}.",
        "Choose *printed* once it is printed (this form then opens again), *shipped* with the tracking number once it is "
        "handed to the carrier, or *cannot be printed* with the reason (the customer is refunded). An answer the print "
        "outbox refuses (shipped without a tracking number, anything after shipped or failed) opens the form again; "
        "the task's log says why.",
    ]
    return "\n\n".join(lines)
