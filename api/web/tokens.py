"""``/tokens``: buy a token pack through Stripe Checkout, and the page Stripe sends the buyer back to.

Tokens are credited only by Stripe's signed webhook (include/payments.py); the return page
(``/tokens/return?session_id=...``) reads the ledger and says "payment received" once that
credit exists, and "still confirming" (refreshing itself) until then. Without Stripe keys the
page says that buying is not configured.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlmodel import Session, select

from api.deps import get_db
from api.web.core import CsrfChecked, PageUser, redirect, render
from include import ledger, payments
from include.models import LedgerEntry

router = APIRouter(include_in_schema=False)

SessionDep = Annotated[Session, Depends(get_db)]


def _packs_page(request: Request, status_code: int = 200, **context) -> Response:
    context.setdefault("error", None)
    return render(
        request,
        "tokens/packs.html",
        status_code=status_code,
        packs=list(payments.TOKEN_PACKS.values()),
        configured=payments.payments_configured(),
        submission_key=secrets.token_urlsafe(16),
        **context,
    )


@router.get("/tokens")
def packs_page(request: Request, user: PageUser, checkout: str = "") -> Response:
    return _packs_page(request, cancelled=checkout == "cancelled")


@router.post("/tokens", dependencies=[CsrfChecked])
def buy(
    request: Request,
    user: PageUser,
    pack: Annotated[str, Form()] = "",
    submission_key: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    if not payments.payments_configured():
        return _packs_page(request, 503)
    if pack not in payments.TOKEN_PACKS:
        return _packs_page(request, 422, error="Choose one of the packs.")
    try:
        # A resent form opens the same Checkout Session (Stripe replays it for the same key).
        request_key = f"{submission_key or secrets.token_urlsafe(16)}:{pack}"
        checkout = payments.checkout_token_pack(user.id, user.email, pack, request_key)
    except payments.PaymentError as error:
        return _packs_page(request, 502, error=f"Stripe could not start the payment: {error}")
    return redirect(request, checkout["url"])


@router.get("/tokens/return")
def checkout_return(request: Request, user: PageUser, session: SessionDep, session_id: str = "") -> Response:
    credit = None
    if session_id:
        credit = session.exec(
            select(LedgerEntry).where(LedgerEntry.idempotency_key == ledger.purchase_key(session_id), LedgerEntry.user_id == user.id)
        ).first()
    return render(request, "tokens/return.html", credit=credit, session_id=session_id)
