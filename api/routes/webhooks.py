"""``/api/webhooks/stripe``: Stripe's events, verified on the raw body and handled once per event id.

``checkout.session.completed`` (and ``checkout.session.async_payment_succeeded``) are routed by the
session's ``metadata.kind``: ``token_pack`` credits the pack (once per session, whatever duplicates
or reordering arrive), ``sticker_order`` goes to ``include.orders.on_checkout_completed`` when that
module is deployed. Unknown kinds and event types are acknowledged (200) so Stripe stops resending.
A handler that fails answers 500 and records nothing, so Stripe delivers the event again.
"""

from __future__ import annotations

import importlib
import logging

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from include import payments
from include.db import session_scope
from include.models import StripeEvent

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

CHECKOUT_PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


def _already_processed(event_id: str) -> bool:
    with session_scope() as session:
        return session.get(StripeEvent, event_id) is not None


def _record_processed(event_id: str, event_type: str) -> None:
    try:
        with session_scope() as session:
            session.add(StripeEvent(id=event_id, type=event_type))
    except IntegrityError:
        pass  # a concurrent delivery of the same event recorded it; the handlers are idempotent


def _sticker_order_handler():
    try:
        orders = importlib.import_module("include.orders")
    except ModuleNotFoundError:
        return None
    return getattr(orders, "on_checkout_completed", None)


def handle_checkout_paid(session: dict) -> str:
    kind = (session.get("metadata") or {}).get("kind")
    if kind == payments.KIND_TOKEN_PACK:
        entry = payments.fulfil_token_pack(session)
        return f"credited ledger entry {entry.id}" if entry else "not paid yet"
    if kind == payments.KIND_STICKER_ORDER:
        handler = _sticker_order_handler()
        if handler is None:
            log.warning("sticker order checkout %s paid but include.orders is not deployed", session.get("id"))
            return "sticker orders not handled here"
        handler(session)
        return "sticker order updated"
    log.warning("checkout session %s has unknown kind %r; acknowledged", session.get("id"), kind)
    return "unknown kind"


def process_stripe_webhook(payload: bytes, signature_header: str | None) -> dict[str, str]:
    try:
        event = payments.verify_webhook(payload, signature_header)
    except payments.InvalidWebhook as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc
    event_id, event_type = event["id"], event["type"]
    if _already_processed(event_id):
        return {"status": "duplicate", "event": event_id}
    outcome = "ignored"
    if event_type in CHECKOUT_PAID_EVENTS:
        outcome = handle_checkout_paid(event["data"]["object"])
    _record_processed(event_id, event_type)
    log.info("stripe event %s (%s): %s", event_id, event_type, outcome)
    return {"status": "processed", "event": event_id, "outcome": outcome}


@router.post("/stripe")
async def stripe_webhook(request: Request) -> dict[str, str]:
    if not payments.payments_configured():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="Payments are not configured on this server.")
    payload = await request.body()  # the raw bytes: the signature covers them exactly
    # The database work is blocking: off the event loop.
    return await run_in_threadpool(process_stripe_webhook, payload, request.headers.get("Stripe-Signature"))
