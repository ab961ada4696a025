"""``POST /api/webhooks/print``: the print vendor's ``package_shipped`` and ``order_failed`` webhooks.

Every delivery is recorded on the order's timeline. Printful-style webhooks are not signed, so
the body is only a hint: the order's state is taken from the vendor's own answer
(``vendor.status``), never from the body. Nothing here moves money: a failed print is refunded
by the sticker DAG's settle step, exactly once however many times the webhook arrives.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, HTTPException, Request, status

from fulfillment.vendors import VendorError, VendorJob, VendorJobState
from fulfillment.vendors.printful import parse_webhook
from include import orders
from include.print_vendors import get_vendor

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("/print")
async def print_webhook(request: Request) -> dict[str, str]:
    try:
        event = parse_webhook(await request.body())
    except ValueError as error:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(error)) from error
    if event is None:
        return {"result": "ignored"}  # a webhook type we do not act on
    try:
        order = await asyncio.to_thread(orders.get, event.order_id)
    except orders.OrderNotFound as error:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Sticker order not found.") from error
    if order.vendor is None:
        # Not recorded as sent yet: answer an error so the vendor delivers again later.
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail="The order is not at the print vendor yet.")
    vendor = get_vendor(order.vendor)
    job = VendorJob(vendor=order.vendor, order_id=order.id, job_id=order.vendor_job_id or "", state=VendorJobState.SUBMITTED)
    try:
        confirmed = await asyncio.to_thread(vendor.status, job)
    except VendorError as error:
        log.warning("print webhook for order %s: vendor status unavailable: %s", order.id, error)
        raise HTTPException(status_code=status.HTTP_502_BAD_GATEWAY, detail="Could not confirm with the print vendor.") from error
    updated = await asyncio.to_thread(orders.record_webhook, event, confirmed)
    log.info("print webhook %s for order %s: vendor says %s, order is %s", event.kind, order.id, confirmed.state.value, updated.status)
    return {"result": "recorded", "order_status": updated.status}
