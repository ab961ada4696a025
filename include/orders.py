"""A sticker order's lifecycle in the application DB: created, paid, rendered, printed, shipped or refunded.

The API creates orders (``create_order``) and marks them paid from Stripe's webhook
(``on_checkout_completed``) or, in development without Stripe, at once (``orders_dev_autopay``);
then the sticker DAG (``bitbuddies_sticker_order``, ``dag_run_id`` = order id) is started by
``OUTBOX``, the same DAG-run outbox as generations (``include/outbox.py``): a paid order whose
run could not be started is picked up by the API's trigger loop. The DAG's
tasks report through ``start_rendering``, ``mark_rendered``, ``mark_submitted`` and
``record_vendor_state``; the print webhook through ``record_webhook``; and the DAG's teardown
``settle`` refunds a paid order that did not ship, exactly once.

Every status change is one transaction that updates the order and appends its timeline event
(``StickerOrderEvent``, UNIQUE per order and status), so a change either happened with its
event or not at all, whatever process is killed when. Transitions only move forward: a repeated
or late call (a retried task, a webhook delivered three times) changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from fulfillment.geometry import count_pages
from fulfillment.vendors.base import ShippingAddress, VendorEvent, VendorJob, VendorJobState
from include.airflow_client import AirflowClient
from include.db import session_scope
from include.generations import share_url
from include.models import SHEET_SIZES, Generation, StickerOrder, StickerOrderEvent, utcnow
from include.outbox import DagRunOutbox
from include.settings import Settings, get_settings

if TYPE_CHECKING:
    from fulfillment.sheet import Sticker
    from include.payments import StripeAccount

log = logging.getLogger(__name__)

ORDER_DAG_ID = "bitbuddies_sticker_order"
CHECKOUT_KIND = "sticker_order"  # Stripe Checkout metadata "kind" for sticker orders
DEV_AUTOPAY = "dev_autopay"

# The forward order of statuses; "failed" and "refunded" can follow any paid status.
_PROGRESS = ("pending_payment", "paid", "rendering", "rendered", "submitted", "printed", "shipped")
_AFTER_PAYMENT = frozenset(_PROGRESS[1:-1])
_VENDOR_STATUS = {
    VendorJobState.SUBMITTED: "submitted",
    VendorJobState.PRINTED: "printed",
    VendorJobState.SHIPPED: "shipped",
    VendorJobState.FAILED: "failed",
}

# What the user reads in the timeline at each status.
MESSAGES = {
    "pending_payment": "Order placed; waiting for payment.",
    "paid": "Payment received.",
    "rendering": "Laying out your sticker sheet.",
    "rendered": "Your sticker sheet is ready; you can also download it to print at home.",
    "submitted": "Sent to the print shop.",
    "printed": "Printed; waiting for the carrier.",
    "shipped": "Shipped.",
    "failed": "The print shop could not print your order.",
    "refunded": "Your payment was refunded in full.",
}


# What the customer reads when the vendor reports a failure, or when a webhook arrives: fixed
# phrases, whatever the vendor wrote.
VENDOR_FAILED = "The print shop could not print your order."
WEBHOOK_MESSAGES = {
    VendorJobState.SHIPPED: "The print shop reports your order has shipped.",
    VendorJobState.FAILED: "The print shop reports a problem with your order.",
    VendorJobState.PRINTED: "The print shop reports your order is printed.",
}


class OrderNotFound(LookupError):
    pass


class OrderRejected(ValueError):
    """The order cannot be placed as asked (the message is for the user)."""


def sheet_key(order_id: str, variant: str = "print") -> str:
    """Storage key of the order's whole PDF: ``orders/{id}/sheet.pdf`` or ``.../sheet-home.pdf``."""
    return f"orders/{order_id}/sheet.pdf" if variant == "print" else f"orders/{order_id}/sheet-home.pdf"


def page_key(order_id: str, sheet_number: int, variant: str) -> str:
    """Storage key of one rendered sheet (one mapped render task), before the sheets are joined."""
    return f"orders/{order_id}/sheets/{sheet_number:03d}-{variant}.pdf"


def refund_key(order_id: str) -> str:
    """The payment provider's idempotency key for the order's one refund."""
    return f"refund:sticker-order:{order_id}"


def shipping_address(order: StickerOrder) -> ShippingAddress:
    return ShippingAddress(**order.shipping_address)


# --- reading ----------------------------------------------------------------------------


def get(order_id: str) -> StickerOrder:
    with session_scope() as session:
        return _load(session, order_id)


def timeline(order_id: str, session: Session | None = None) -> list[StickerOrderEvent]:
    query = select(StickerOrderEvent).where(StickerOrderEvent.order_id == order_id).order_by(col(StickerOrderEvent.id))
    if session is not None:
        return list(session.exec(query).all())
    with session_scope() as own_session:
        return list(own_session.exec(query).all())


def generations_of(order: StickerOrder) -> list[Generation]:
    """The order's generations, in the order the customer listed them."""
    with session_scope() as session:
        rows = {g.id: g for g in session.exec(select(Generation).where(col(Generation.id).in_(order.generation_ids))).all()}
    return [rows[gid] for gid in order.generation_ids]


def order_label(order: StickerOrder) -> str:
    """The short order reference printed on every sheet."""
    return order.id[:8].upper()


def stickers_for(order: StickerOrder, read: Callable[[str], bytes]) -> list[Sticker]:
    """One sticker per buddy of the order: its poster (read through ``read``), share page and prompt."""
    # Imported here: the sheet renderer's libraries (numpy, OpenCV, reportlab) stay out of the API.
    from fulfillment.sheet import Sticker

    return [Sticker(read(g.assets["poster"]), share_url(g), g.prompt) for g in generations_of(order)]


# --- placing and paying -----------------------------------------------------------------


def create_order(
    user_id: int,
    generation_ids: list[str],
    sheet_size: str,
    copies: int,
    address: dict[str, str],
    idempotency_key: str | None = None,
) -> StickerOrder:
    """Store a new order awaiting payment; ``OrderRejected`` says why one cannot be placed."""
    unique_ids = list(dict.fromkeys(generation_ids))
    if not unique_ids:
        raise OrderRejected("An order needs at least one buddy.")
    if sheet_size not in SHEET_SIZES:
        raise OrderRejected(f"Sheet size must be one of {', '.join(SHEET_SIZES)}.")
    if copies < 1:
        raise OrderRejected("Copies must be at least 1.")
    try:
        checked_address = ShippingAddress(**address)
    except (TypeError, ValueError) as error:
        raise OrderRejected(f"Invalid shipping address: {error}.") from error
    settings = get_settings()
    try:
        return _insert_order(user_id, unique_ids, sheet_size, copies, checked_address, idempotency_key, settings)
    except IntegrityError:
        # A concurrent request with the same idempotency key won (Postgres): answer with its order.
        with session_scope() as session:
            winner = _by_idempotency_key(session, user_id, idempotency_key) if idempotency_key else None
        if winner is None:
            raise
        return winner


def _insert_order(
    user_id: int,
    unique_ids: list[str],
    sheet_size: str,
    copies: int,
    checked_address: ShippingAddress,
    idempotency_key: str | None,
    settings: Settings,
) -> StickerOrder:
    with session_scope(write_lock=True) as session:
        if idempotency_key:
            existing = _by_idempotency_key(session, user_id, idempotency_key)
            if existing is not None:
                return existing
        owned = {
            g.id: g
            for g in session.exec(
                select(Generation).where(
                    col(Generation.id).in_(unique_ids), Generation.user_id == user_id, Generation.deleted_at.is_(None)
                )
            ).all()
        }
        for gid in unique_ids:
            generation = owned.get(gid)
            # Someone else's buddy is reported exactly like a missing one.
            if generation is None:
                raise OrderRejected(f"Buddy {gid} not found.")
            if generation.status != "succeeded" or "poster" not in generation.assets:
                raise OrderRejected(f"Buddy {gid} is not finished yet ({generation.status}); only finished buddies can be printed.")
        sheets = count_pages(len(unique_ids), copies, sheet_size)
        order = StickerOrder(
            user_id=user_id,
            generation_ids=unique_ids,
            sheet_size=sheet_size,
            copies=copies,
            sheet_count=sheets,
            shipping_address=asdict(checked_address),
            amount_cents=sheets * settings.sticker_sheet_price_cents,
            currency=settings.sticker_currency,
            idempotency_key=idempotency_key or None,
        )
        session.add(order)
        session.flush()
        _add_status_event(session, order.id, "pending_payment", MESSAGES["pending_payment"])
    log.info("order %s placed: %d buddies x %d copies on %d %s sheet(s)", order.id, len(unique_ids), copies, sheets, sheet_size)
    return order


def attach_checkout(order_id: str, checkout_session_id: str, checkout_url: str) -> StickerOrder:
    """Remember the Stripe Checkout Session the customer pays through (the first one wins)."""
    with session_scope(write_lock=True) as session:
        order = _load(session, order_id)
        if order.checkout_session_id is None:
            order.checkout_session_id = checkout_session_id
            order.checkout_url = checkout_url
            order.updated_at = utcnow()
            session.add(order)
        return order


def start_checkout(order: StickerOrder, customer_email: str | None) -> StickerOrder:
    """Open the order's Stripe Checkout Session (once: its idempotency key is the order id)."""
    from include import payments

    if order.checkout_session_id is not None:
        return order
    base = get_settings().public_base_url.rstrip("/")
    checkout = payments.create_checkout_session(
        kind=payments.KIND_STICKER_ORDER,
        reference=order.id,
        user_id=order.user_id,
        line_items=[
            {
                "quantity": order.sheet_count,
                "price_data": {
                    "currency": order.currency,
                    "unit_amount": order.amount_cents // order.sheet_count,
                    "product_data": {"name": f"BitBuddies sticker sheet ({order.sheet_size})"},
                },
            }
        ],
        metadata={"order_id": order.id},
        idempotency_key=f"checkout:sticker-order:{order.id}",
        success_url=f"{base}/orders/{order.id}?checkout=success",
        cancel_url=f"{base}/orders/{order.id}?checkout=cancelled",
        customer_email=customer_email,
    )
    return attach_checkout(order.id, checkout["id"], checkout["url"])


def mark_paid(order_id: str, provider: str, reference: str | None) -> tuple[StickerOrder, bool]:
    """Record the payment once; returns the order and whether this call recorded it."""
    with session_scope(write_lock=True) as session:
        order = _load(session, order_id)
        if order.status != "pending_payment":
            return order, False
        order.payment_provider = provider
        order.payment_reference = reference
        order.paid_at = utcnow()
        message = MESSAGES["paid"]
        if provider == DEV_AUTOPAY:
            message = "Marked paid without payment (development setting orders_dev_autopay)."
        _advance(session, order, "paid", message)
        return order, True


def autopay_enabled() -> bool:
    """Whether the development setting may mark orders paid (never in production)."""
    settings = get_settings()
    return settings.orders_dev_autopay and settings.environment != "production"


def autopay(order_id: str) -> StickerOrder:
    """Development without Stripe: mark the order paid at once, loudly (never in production)."""
    settings = get_settings()
    if not settings.orders_dev_autopay:
        raise RuntimeError("orders_dev_autopay is off: sticker orders need Stripe to be paid")
    if settings.environment == "production":
        raise RuntimeError("orders_dev_autopay is refused in production")
    log.warning("order %s marked paid WITHOUT payment: BITBUDDIES_ORDERS_DEV_AUTOPAY is on (development only)", order_id)
    order, _ = mark_paid(order_id, DEV_AUTOPAY, None)
    return order


def on_checkout_completed(session: dict, airflow: AirflowClient | None = None) -> StickerOrder | None:
    """Stripe's ``checkout.session.completed`` for a sticker order: mark it paid once, start its DAG.

    Safe to call for every delivery of the webhook: the payment is recorded once and a second
    trigger of the same run is a 409 that counts as success. Returns the order (None when the
    session is not for a sticker order or is not paid yet).
    """
    metadata = session.get("metadata") or {}
    if metadata.get("kind") != CHECKOUT_KIND:
        return None
    order_id = metadata.get("order_id") or session.get("client_reference_id")
    if not order_id:
        raise ValueError(f"checkout session {session.get('id')} names no sticker order")
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        log.info("checkout %s for order %s completed but not paid yet (%s)", session.get("id"), order_id, session.get("payment_status"))
        return None
    order = get(order_id)
    if session.get("amount_total") is not None and int(session["amount_total"]) != order.amount_cents:
        raise ValueError(f"checkout {session.get('id')} paid {session['amount_total']}, order {order_id} costs {order.amount_cents}")
    order, recorded = mark_paid(order_id, "stripe", session.get("payment_intent") or session.get("id"))
    if recorded:
        log.info("order %s paid through checkout %s", order_id, session.get("id"))
    if order.triggered_at is None and order.status != "pending_payment":
        if airflow is not None:
            OUTBOX.trigger(airflow, order)
        else:
            with AirflowClient(timeout=5.0) as client:
                OUTBOX.trigger(client, order)
    return get(order_id)


# --- starting the DAG -------------------------------------------------------------------


def dag_run_conf(order: StickerOrder) -> dict[str, object]:
    return {"order_id": order.id}


# Paid orders only: nothing is rendered or printed before payment.
OUTBOX = DagRunOutbox(what="sticker order", table=StickerOrder, ready=lambda: StickerOrder.status == "paid",
                      dag_id=ORDER_DAG_ID, conf=dag_run_conf)


# --- what the DAG reports ---------------------------------------------------------------


def start_rendering(order_id: str) -> StickerOrder:
    """The DAG starts work on a paid order (refuses an unpaid one: nothing prints before payment)."""
    with session_scope(write_lock=True) as session:
        order = _load(session, order_id)
        if order.status == "pending_payment":
            raise OrderRejected(f"order {order_id} is not paid")
        _advance(session, order, "rendering", MESSAGES["rendering"])
        return order


def mark_rendered(order_id: str, print_key: str, home_key: str) -> StickerOrder:
    with session_scope(write_lock=True) as session:
        order = _load(session, order_id)
        order.sheet_key = print_key
        order.home_sheet_key = home_key
        _advance(session, order, "rendered", MESSAGES["rendered"])
        return order


def mark_submitted(order_id: str, job: VendorJob) -> StickerOrder:
    with session_scope(write_lock=True) as session:
        order = _load(session, order_id)
        order.vendor = job.vendor
        order.vendor_job_id = job.job_id
        _advance(session, order, "submitted", f"{MESSAGES['submitted']} ({job.vendor} job {job.job_id})")
    return record_vendor_state(order_id, job)


def record_vendor_state(order_id: str, job: VendorJob) -> StickerOrder:
    """What the vendor reports (polled by the DAG or confirmed after a webhook), onto the order."""
    status = _VENDOR_STATUS[job.state]
    with session_scope(write_lock=True) as session:
        order = _load(session, order_id)
        if job.tracking_number:
            order.tracking_number = job.tracking_number
            order.tracking_url = job.tracking_url or None
            order.carrier = job.carrier or None
        message = MESSAGES[status]
        if status == "shipped":
            message = f"Shipped{' with ' + job.carrier if job.carrier else ''}: tracking {job.tracking_number}."
        elif status == "failed":
            # The vendor's own words go to the log (for the operator), never to the customer.
            log.warning("order %s: the print vendor reports a failure: %s", order_id, job.error or "no reason given")
            order.vendor_error = order.vendor_error or (job.error or "no reason given")[:500]
            order.error = order.error or VENDOR_FAILED
            message = order.error
        _advance(session, order, status, message)
        return order


def record_webhook(event: VendorEvent, confirmed: VendorJob, delivery_key: str) -> StickerOrder:
    """Record one webhook delivery, then the state the vendor confirmed (never the webhook's word alone).

    ``delivery_key`` names the delivery (the vendor's event, not its retry): a repeated delivery is
    recorded once. The timeline says what kind of update arrived in our words; the vendor's text is
    logged for the operator.
    """
    log.info("order %s: %s webhook from %s: %s", event.order_id, event.kind, confirmed.vendor, event.reason or event.tracking_number)
    try:
        with session_scope(write_lock=True) as session:
            _load(session, event.order_id)
            session.add(
                StickerOrderEvent(
                    order_id=event.order_id,
                    kind="webhook",
                    status=_VENDOR_STATUS[event.state],
                    message=WEBHOOK_MESSAGES.get(event.state, "The print shop sent an update."),
                    dedupe_key=f"webhook:{delivery_key}"[:64],
                )
            )
    except IntegrityError:
        log.info("order %s: webhook delivery %s already recorded", event.order_id, delivery_key)
    return record_vendor_state(event.order_id, confirmed)


# --- settling: the DAG's teardown ---------------------------------------------------------


def settle(order_id: str, reason: str = "", stripe: StripeAccount | None = None) -> str:
    """After the run: a paid order that did not ship is refunded, exactly once; returns what happened.

    ``stripe``: the account the refund goes through (the DAG's task passes the one of its Airflow
    connection); the settings' when omitted.

    The refund goes to the payment provider first under ``refund_key(order_id)`` (Stripe replays
    the first answer for that key, so a retry after a crash does not refund twice), then the order
    is marked refunded with its timeline event in one transaction. The operator is alerted.
    """
    order = get(order_id)
    if order.status == "shipped":
        return "shipped: nothing to settle"
    if order.refund_state == "refunded":
        _alert_operator(order)  # in case the process died right after recording the refund
        return f"already refunded ({order.refund_reference})"
    if order.payment_provider is None:
        return "never paid: nothing to refund"
    with session_scope(write_lock=True) as session:
        order = _load(session, order_id)
        if order.status != "failed":
            order.error = order.error or (reason or "Your order could not be completed.")
            _advance(session, order, "failed", order.error)
    reference = _refund_payment(order, stripe)
    with session_scope(write_lock=True) as session:
        order = _load(session, order_id)
        if order.refund_state != "refunded":
            order.refund_state = "refunded"
            order.refund_reference = reference
            _advance(session, order, "refunded", MESSAGES["refunded"])
    _alert_operator(order)
    return f"refunded ({reference})"


def _refund_payment(order: StickerOrder, stripe: StripeAccount | None) -> str:
    if order.payment_provider == DEV_AUTOPAY:
        log.warning("order %s was paid by orders_dev_autopay: nothing to refund at a payment provider", order.id)
        return f"{DEV_AUTOPAY}:{order.id}"
    from include import payments  # the Stripe client lives there

    refund = payments.refund_payment(order.payment_reference, order.amount_cents, idempotency_key=refund_key(order.id), account=stripe)
    return refund["id"]


def _alert_operator(order: StickerOrder) -> None:
    """One alert per failed order (UNIQUE key), delivered by the call that creates it.

    Best effort: the refund is recorded already, and a lost alert must not undo or repeat it.
    """
    from include import alerts
    from include.models import Alert

    amount = f"{order.amount_cents / 100:.2f} {order.currency.upper()}"
    alert = Alert(
        key=f"sticker_order_failed:{order.id}",
        kind="sticker_order_failed",
        user_id=order.user_id,
        title="BitBuddies: sticker order failed and was refunded",
        message=f"Sticker order {order.id} (user {order.user_id}) failed: {order.error}"
        + (f" (vendor: {order.vendor_error})" if order.vendor_error else "")
        + f"\nRefund: {amount} ({order.refund_reference})",
        details={"order_id": order.id, "error": order.error, "vendor_error": order.vendor_error, "refund": order.refund_reference, "vendor": order.vendor},
    )
    try:
        alerts.raise_once(alert)
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("could not alert the operator about order %s", order.id)


# --- plumbing -----------------------------------------------------------------------------


def _load(session: Session, order_id: str) -> StickerOrder:
    order = session.get(StickerOrder, order_id)
    if order is None:
        raise OrderNotFound(f"no sticker order {order_id}")
    return order


def _by_idempotency_key(session: Session, user_id: int, key: str) -> StickerOrder | None:
    return session.exec(
        select(StickerOrder).where(StickerOrder.user_id == user_id, StickerOrder.idempotency_key == key)
    ).first()


def _rank(status: str) -> int:
    return _PROGRESS.index(status) if status in _PROGRESS else len(_PROGRESS)


def _advance(session: Session, order: StickerOrder, status: str, message: str) -> None:
    """Move ``order`` forward to ``status`` with its timeline event, in the caller's transaction.

    Backward or repeated moves are ignored (statuses may be skipped: a vendor can report
    shipped without printed). ``failed`` follows any paid, unshipped status; ``refunded``
    only ``failed``.
    """
    current = order.status
    if status == current:
        return
    if status == "failed":
        allowed = current in _AFTER_PAYMENT
    elif status == "refunded":
        allowed = current == "failed"
    else:
        allowed = current in _PROGRESS and _rank(status) > _rank(current)
    if not allowed:
        log.info("order %s is %s; ignoring %s", order.id, current, status)
        session.add(order)  # keep field updates such as tracking
        return
    order.status = status
    order.updated_at = utcnow()
    session.add(order)
    _add_status_event(session, order.id, status, message)


def _add_status_event(session: Session, order_id: str, status: str, message: str) -> None:
    dedupe = f"status:{status}"
    exists = session.exec(
        select(StickerOrderEvent.id).where(StickerOrderEvent.order_id == order_id, StickerOrderEvent.dedupe_key == dedupe)
    ).first()
    if exists is None:
        session.add(StickerOrderEvent(order_id=order_id, kind="status", status=status, message=message, dedupe_key=dedupe))
        session.flush()
