"""``/api/sticker-orders``: order sticker sheets of your buddies, follow the order, download the sheet.

Placing an order stores it (awaiting payment) and answers with a Stripe Checkout URL; Stripe's
webhook marks it paid and starts the sticker DAG. Without Stripe, the development setting
``orders_dev_autopay`` marks it paid at once and says so in the answer and the timeline;
with neither, ordering is refused (503) rather than silently free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, status
from fastapi.responses import StreamingResponse

from api.deps import AirflowDep, BrowserOrApiUser, CurrentUser
from include import orders, payments, quotas, storage
from include.models import (
    StickerOrder,
    StickerOrderCreate,
    StickerOrderEventPublic,
    StickerOrderPublic,
    StickerOrderTracking,
    User,
)
from include.settings import get_settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/sticker-orders", tags=["sticker orders"])

CHUNK_BYTES = 256 * 1024


def order_public(order: StickerOrder) -> StickerOrderPublic:
    base = f"{get_settings().public_base_url.rstrip('/')}/api/sticker-orders/{order.id}/sheet.pdf"
    tracking = None
    if order.tracking_number:
        tracking = StickerOrderTracking(carrier=order.carrier, number=order.tracking_number, url=order.tracking_url)
    return StickerOrderPublic(
        id=order.id,
        status=order.status,
        generation_ids=order.generation_ids,
        sheet_size=order.sheet_size,
        copies=order.copies,
        sheet_count=order.sheet_count,
        amount_cents=order.amount_cents,
        currency=order.currency,
        checkout_url=order.checkout_url if order.status == "pending_payment" else None,
        payment=order.payment_provider,
        error=order.error,
        refund_state=order.refund_state,
        tracking=tracking,
        sheet_url=base if order.sheet_key else None,
        home_sheet_url=f"{base}?variant=home" if order.home_sheet_key else None,
        timeline=[
            StickerOrderEventPublic(status=e.status, kind=e.kind, message=e.message, at=e.at) for e in orders.timeline(order.id)
        ],
        created_at=order.created_at,
    )


def _owned_order(user: User, order_id: str) -> StickerOrder:
    try:
        order = orders.get(order_id)
    except orders.OrderNotFound:
        order = None
    # Someone else's order is reported exactly like a missing one.
    if order is None or order.user_id != user.id:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Sticker order not found.")
    return order


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StickerOrderPublic)
def create_sticker_order(
    body: StickerOrderCreate,
    user: CurrentUser,
    airflow: AirflowDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=255, description="Same key, same order")
    ] = None,
) -> StickerOrderPublic:
    """Place an order for sticker sheets of your finished buddies; pay at ``checkout_url``."""
    quotas.count_sticker_order(user.id)
    paying = payments.payments_configured()
    if not paying and not orders.autopay_enabled():
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="Sticker orders cannot be paid right now: payments are not configured.",
        )
    try:
        order = orders.create_order(
            user.id, body.generation_ids, body.sheet_size, body.copies, body.shipping_address.model_dump(), idempotency_key
        )
    except orders.OrderRejected as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from error
    if order.status == "pending_payment":
        if paying:
            try:
                order = orders.start_checkout(order, user.email)
            except payments.PaymentError as error:
                raise HTTPException(status_code=status.HTTP_502_BAD_GATEWAY, detail=str(error)) from error
        else:
            order = orders.autopay(order.id)
    if order.status == "paid" and order.triggered_at is None:
        orders.OUTBOX.trigger(airflow, order)  # on failure the API's trigger loop starts it later
    return order_public(orders.get(order.id))


@router.get("/{order_id}", response_model=StickerOrderPublic)
def read_sticker_order(user: CurrentUser, order_id: str) -> StickerOrderPublic:
    """The order's status, its timeline (every step and vendor update) and tracking once shipped."""
    return order_public(_owned_order(user, order_id))


@router.get("/{order_id}/sheet.pdf", response_class=StreamingResponse)
def download_sheet(
    user: BrowserOrApiUser,
    order_id: str,
    variant: Annotated[Literal["print", "home"], Query(description="print: as sent to the print shop; home: to print yourself")] = "print",
) -> StreamingResponse:
    """The order's sticker sheet PDF (owner only), once it has been rendered."""
    order = _owned_order(user, order_id)
    key = order.sheet_key if variant == "print" else order.home_sheet_key
    if key is None or not storage.exists(key):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="The sheet is not rendered yet.")

    def chunks() -> Iterator[bytes]:
        with storage.open_read(key) as source:
            while chunk := source.read(CHUNK_BYTES):
                yield chunk

    filename = f"bitbuddies-{order.id[:8]}{'-home' if variant == 'home' else ''}.pdf"
    headers = {
        "Content-Length": str(storage.size(key)),
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(chunks(), media_type="application/pdf", headers=headers)
