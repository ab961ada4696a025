"""``/account``: balance, ledger history (grants, purchases, charges, refunds) and API keys.

A new API key is shown once, on the page that answers its creation form; afterwards only its
name and first characters are listed. Revoking takes effect on the key's next request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlmodel import Session, col, select

from api.deps import get_db
from api.web.core import CsrfChecked, PageUser, redirect, render
from include import accounts
from include.models import LedgerEntry, StickerOrder, User

router = APIRouter(include_in_schema=False)

SessionDep = Annotated[Session, Depends(get_db)]
LEDGER_ROWS = 50
REASONS = {"grant": "Free tokens", "purchase": "Token pack", "charge": "Buddy made", "refund": "Refund"}


def _account_page(request: Request, user: User, session: Session, status_code: int = 200, **context) -> Response:
    entries = session.exec(
        select(LedgerEntry).where(LedgerEntry.user_id == user.id).order_by(col(LedgerEntry.id).desc()).limit(LEDGER_ROWS)
    ).all()
    sticker_orders = session.exec(
        select(StickerOrder).where(StickerOrder.user_id == user.id).order_by(col(StickerOrder.created_at).desc()).limit(20)
    ).all()
    context.setdefault("errors", {})
    return render(
        request,
        "account/account.html",
        status_code=status_code,
        entries=entries,
        reasons=REASONS,
        keys=accounts.list_api_keys(user.id, session),
        orders=sticker_orders,
        **context,
    )


@router.get("/account")
def account_page(request: Request, user: PageUser, session: SessionDep) -> Response:
    return _account_page(request, user, session)


@router.post("/account/keys", dependencies=[CsrfChecked])
def create_key(request: Request, user: PageUser, session: SessionDep, name: Annotated[str, Form()] = "") -> Response:
    try:
        new = accounts.create_api_key(user.id, name)
    except accounts.AccountError as error:
        return _account_page(request, user, session, 422, errors={"name": error.message}, key_name=name)
    session.rollback()  # end the request's read snapshot, taken before the key existed
    return _account_page(request, user, session, 201, new_key=new)


@router.post("/account/keys/{key_id}/revoke", dependencies=[CsrfChecked])
def revoke_key(request: Request, user: PageUser, key_id: int) -> Response:
    accounts.revoke_api_key(user.id, key_id)  # someone else's key: nothing happens, nothing is told
    return redirect(request, "/account#keys")
