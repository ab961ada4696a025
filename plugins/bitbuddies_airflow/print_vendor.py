"""Waiting for the print vendor without holding a worker: ``PrintJobTrigger`` and ``WaitForPrintOperator``.

The trigger polls ``vendor.status`` (read-only, so a triggerer failover running it twice is
harmless) until the job's state differs from the one the operator last recorded, then fires.
The operator records every state on the order (printed, shipped with tracking, failed) and
defers again until the job is shipped (success) or failed (the task fails without retries and
the DAG's settle teardown refunds). Its arguments are only the job and an absolute deadline.
:func:`print_vendor` is the vendor of the DAG's tasks: Printful's token comes from the Airflow
connection ``bitbuddies_printful``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from bitbuddies_airflow.hooks import PrintfulHook
from fulfillment.vendors import PrintVendor, VendorError, VendorJob, VendorJobState
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
