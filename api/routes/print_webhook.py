"""``POST /api/webhooks/print``: the print vendor's ``package_shipped`` and ``order_failed`` webhooks.

Only the vendor may call it: the request carries the shared secret (``print_webhook_secret``)
either in the URL registered with the vendor (``?token=...``, as Printful supports) or as an
HMAC-SHA256 of the body (``X-Webhook-Signature: sha256=<hex>``). Without it: 401 and nothing is
recorded. Each delivery is recorded once on the order's timeline (a redelivery of the same
vendor event changes nothing), in our words, never the vendor's. The body is only a hint: the
order's state is taken from the vendor's own answer (``vendor.status``). Nothing here moves money:
a failed print is refunded by the sticker DAG's settle step, exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status

from fulfillment.vendors import VendorError, VendorJob, VendorJobState
from fulfillment.vendors.printful import parse_webhook
from api.deps import ErrorBody
from include import orders
from include.print_vendors import get_vendor
from include.settings import get_settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
_UNAUTHORIZED = HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="Missing or wrong webhook secret.")


SIGNATURE_HEADER = "X-Webhook-Signature"


def _secret() -> bytes:
    return get_settings().resolved_print_webhook_secret.encode()


def _signed(signature: str, body: bytes) -> bool:
    expected = "sha256=" + hmac.new(_secret(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature.encode(), expected.encode())


def delivery_key(body: bytes) -> str:
    """The vendor's event, whatever its retry count: a redelivery has the same key."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k != "retries"}
        body = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(body).hexdigest()[:40]


@router.post(
    "/print",
    responses={401: {"model": ErrorBody, "description": "Missing or wrong webhook secret"}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def print_webhook(
    request: Request,
    token: Annotated[str | None, Query(description="The shared secret, when registered in the URL")] = None,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, description="sha256=<hex HMAC of the body>")] = None,
) -> dict[str, str]:
    # A token is checked before the body is read; a signature needs the body (at most 1 MiB).
    if token is not None:
        if not hmac.compare_digest(token.encode(), _secret()):
            raise _UNAUTHORIZED
        body = await request.body()
    elif signature is not None:
        body = await request.body()
        if not _signed(signature, body):
            raise _UNAUTHORIZED
    else:
        raise _UNAUTHORIZED
    try:
        event = parse_webhook(body)
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
    updated = await asyncio.to_thread(orders.record_webhook, event, confirmed, delivery_key(body))
    log.info("print webhook %s for order %s: vendor says %s, order is %s", event.kind, order.id, confirmed.state.value, updated.status)
    return {"result": "recorded", "order_status": updated.status}
