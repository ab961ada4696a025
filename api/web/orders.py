"""``/orders/new`` (choose buddies, sheet size, copies, address; a preview of the sheet) and
``/orders/{id}`` (pay, timeline, tracking, the print-at-home PDF).

Placing goes through ``include.orders`` like ``POST /api/sticker-orders``; paying opens Stripe
Checkout (the webhook marks the order paid and starts the sticker DAG) or, in development
without Stripe, the ``orders_dev_autopay`` setting marks it paid at once. The preview image is
``fulfillment.sheet.render_preview``: the PDF's own first page, rasterised.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from api.deps import AirflowDep, get_db
from api.presenters import asset_urls
from api.web.core import CsrfChecked, PageUser, owned_or_404, redirect, render
from fulfillment.geometry import sheet_capacity
from include import orders, payments, storage
from include.generations import share_url
from include.models import SHEET_SIZES, Generation, ShippingAddressIn, StickerOrder, User
from include.settings import get_settings

router = APIRouter(include_in_schema=False)

SessionDep = Annotated[Session, Depends(get_db)]
MAX_BUDDIES = 24
MAX_COPIES = 20
ADDRESS_FIELDS = (
    ("name", "Full name", "name", True),
    ("address1", "Address", "address-line1", True),
    ("address2", "Address line 2 (optional)", "address-line2", False),
    ("city", "City", "address-level2", True),
    ("state_code", "State or region (optional)", "address-level1", False),
    ("zip", "Postal code", "postal-code", True),
    ("country_code", "Country code (2 letters, e.g. US, GB, DE)", "country", True),
    ("email", "Email for shipping updates (optional)", "email", False),
    ("phone", "Phone (optional)", "tel", False),
)
IN_PROGRESS = {"paid", "rendering", "rendered", "submitted", "printed"}


def _finished_buddies(session: Session, user: User) -> list[Generation]:
    return list(
        session.exec(
            select(Generation)
            .where(Generation.user_id == user.id, Generation.status == "succeeded")
            .order_by(col(Generation.created_at).desc())
            .limit(200)
        ).all()
    )


def _form_page(request: Request, session: Session, user: User, status_code: int = 200, **context) -> Response:
    buddies = _finished_buddies(session, user)
    context.setdefault("errors", {})
    context.setdefault("chosen", [])
    context.setdefault("sheet_size", "A4")
    context.setdefault("copies", 1)
    context.setdefault("address", {"email": user.email})
    return render(
        request,
        "orders/new.html",
        status_code=status_code,
        buddies=[{"g": g, "poster": asset_urls(g).get("poster")} for g in buddies],
        sizes=SHEET_SIZES,
        capacities={size: sheet_capacity(size) for size in SHEET_SIZES},
        address_fields=ADDRESS_FIELDS,
        price_cents=get_settings().sticker_sheet_price_cents,
        currency=get_settings().sticker_currency,
        submission_key=secrets.token_urlsafe(16),
        max_buddies=MAX_BUDDIES,
        max_copies=MAX_COPIES,
        **context,
    )


@router.get("/orders/new")
def order_form(request: Request, user: PageUser, session: SessionDep, buddy: Annotated[list[str], Query()] = []) -> Response:  # noqa: B006
    return _form_page(request, session, user, chosen=buddy)


def _check_order(chosen: list[str], sheet_size: str, copies: str, address: dict[str, str]) -> tuple[dict[str, str], int]:
    """Per-field messages for the order form (empty when it is fine) and the copies as a number."""
    errors: dict[str, str] = {}
    if not chosen:
        errors["buddies"] = "Choose at least one buddy."
    elif len(chosen) > MAX_BUDDIES:
        errors["buddies"] = f"A sheet order holds at most {MAX_BUDDIES} buddies; you chose {len(chosen)}."
    if sheet_size not in SHEET_SIZES:
        errors["sheet_size"] = f"Choose a sheet size: {', '.join(SHEET_SIZES)}."
    try:
        count = int(copies)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_COPIES:
        errors["copies"] = f"Copies must be a whole number from 1 to {MAX_COPIES}."
    try:
        ShippingAddressIn(**address)
    except ValidationError as error:
        for problem in error.errors():
            field = str(problem["loc"][0])
            label = next((label for name, label, _, _ in ADDRESS_FIELDS if name == field), field)
            if problem["type"] == "string_too_short":
                errors[field] = f"{label.split(' (')[0]} is required." if field != "country_code" else "Enter the two-letter country code, e.g. US."
            else:
                errors[field] = f"{label.split(' (')[0]}: {problem['msg'].lower()}."
    code = address.get("country_code", "")
    if "country_code" not in errors and (len(code) != 2 or not code.isalpha()):
        errors["country_code"] = "Enter the two-letter country code, e.g. US."
    return errors, count


@router.post("/orders/new", dependencies=[CsrfChecked])
async def place_order(request: Request, user: PageUser, session: SessionDep) -> Response:
    form = await request.form()
    chosen = [str(v) for v in form.getlist("buddy")]
    sheet_size = str(form.get("sheet_size", "A4"))
    copies_text = str(form.get("copies", "1"))
    address = {name: str(form.get(name, "")).strip() for name, *_ in ADDRESS_FIELDS}
    address["country_code"] = address["country_code"].upper()
    submission_key = str(form.get("submission_key", ""))[:64]

    def place() -> Response:
        errors, copies = _check_order(chosen, sheet_size, copies_text, address)
        if not errors:
            try:
                order = orders.create_order(
                    user.id, chosen, sheet_size, copies, address, f"web:{submission_key}" if submission_key else None
                )
            except orders.OrderRejected as rejected:
                errors["buddies"] = str(rejected)
            else:
                return redirect(request, f"/orders/{order.id}")
        return _form_page(
            request, session, user, 422, errors=errors, chosen=chosen, sheet_size=sheet_size, copies=copies_text, address=address
        )

    return await asyncio.to_thread(place)


@router.get("/orders/preview.png")
def sheet_preview(
    user: PageUser,
    session: SessionDep,
    buddy: Annotated[list[str], Query()] = [],  # noqa: B006
    size: str = "A4",
    copies: int = 1,
) -> Response:
    """The first sheet of what the order form describes, as it will print (owner's finished buddies only)."""
    if size not in SHEET_SIZES:
        size = "A4"
    chosen = list(dict.fromkeys(buddy))[:MAX_BUDDIES]
    rows = {
        g.id: g
        for g in session.exec(select(Generation).where(col(Generation.id).in_(chosen), Generation.user_id == user.id)).all()
        if g.status == "succeeded" and "poster" in g.assets
    }
    # Imported here: the renderer's libraries (numpy, OpenCV, reportlab: ~35 MB) stay out of the API
    # process until someone previews a sheet.
    from fulfillment.sheet import Sticker, render_preview

    stickers = []
    for gid in chosen:
        if gid in rows:
            with storage.open_read(rows[gid].assets["poster"]) as poster:
                stickers.append(Sticker(poster.read(), share_url(rows[gid]), rows[gid].prompt))
    if not stickers:
        return Response(status_code=204)
    png = render_preview(stickers, size, max(1, min(copies, MAX_COPIES)), width_px=560)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


@router.get("/orders/{order_id}")
def order_page(request: Request, user: PageUser, session: SessionDep, order_id: str, checkout: str = "") -> Response:
    order = owned_or_404(session.get(StickerOrder, order_id), user)
    buddies = orders.generations_of(order)
    return render(
        request,
        "orders/detail.html",
        order=order,
        label=orders.order_label(order),
        timeline=orders.timeline(order.id, session),
        buddies=[{"g": g, "poster": asset_urls(g).get("poster")} for g in buddies],
        can_pay=payments.payments_configured() or orders.autopay_enabled(),
        refresh=order.status in IN_PROGRESS or (order.status == "pending_payment" and checkout == "success"),
        just_paid=checkout == "success",
        cancelled=checkout == "cancelled",
    )


@router.post("/orders/{order_id}/pay", dependencies=[CsrfChecked])
def pay(request: Request, user: PageUser, session: SessionDep, airflow: AirflowDep, order_id: str) -> Response:
    order = owned_or_404(session.get(StickerOrder, order_id), user)
    if order.status != "pending_payment":
        return redirect(request, f"/orders/{order.id}")
    if payments.payments_configured():
        try:
            order = orders.start_checkout(order, user.email)
        except payments.PaymentError as error:
            return render(request, "orders/detail.html", status_code=502, order=order, label=orders.order_label(order),
                          timeline=orders.timeline(order.id), buddies=[], can_pay=True, refresh=False, error=str(error))
        return redirect(request, order.checkout_url)
    if orders.autopay_enabled():
        order = orders.autopay(order.id)
        if order.status == "paid" and order.triggered_at is None:
            orders.OUTBOX.trigger(airflow, order)  # on failure the API's trigger loop starts it later
    return redirect(request, f"/orders/{order.id}")
