"""``/api/tokens``: buy token packs through Stripe Checkout (credited by the webhook, not here)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, status
from pydantic import BaseModel

from api.deps import CurrentUser
from include import payments

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenPackPublic(BaseModel):
    id: str
    tokens: int
    price_cents: int
    currency: str


class CheckoutRequest(BaseModel):
    pack: str = "pack_10"


class CheckoutPublic(BaseModel):
    session_id: str
    url: str
    pack: TokenPackPublic


def _public(pack: payments.TokenPack) -> TokenPackPublic:
    return TokenPackPublic(id=pack.id, tokens=pack.tokens, price_cents=pack.price_cents, currency=pack.currency)


@router.get("/packs", response_model=list[TokenPackPublic])
def list_packs() -> list[TokenPackPublic]:
    return [_public(p) for p in payments.TOKEN_PACKS.values()]


@router.post("/checkout", response_model=CheckoutPublic)
def checkout(
    user: CurrentUser,
    body: CheckoutRequest | None = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=200, description="Same key, same checkout session")
    ] = None,
) -> CheckoutPublic:
    """Open a Stripe Checkout Session for a token pack; pay at ``url``. Tokens arrive with Stripe's webhook."""
    if not payments.payments_configured():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="Payments are not configured on this server.")
    pack = payments.TOKEN_PACKS.get((body or CheckoutRequest()).pack)
    if pack is None:
        known = ", ".join(payments.TOKEN_PACKS)
        raise HTTPException(422, detail=f"Unknown token pack; choose one of {known}.")
    try:
        session = payments.checkout_token_pack(user.id, user.email, pack.id, idempotency_key or uuid.uuid4().hex)
    except payments.PaymentError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=str(exc)) from exc
    return CheckoutPublic(session_id=session["id"], url=session["url"], pack=_public(pack))
