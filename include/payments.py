"""Stripe: token packs through Checkout, refunds and webhook verification (the real ``stripe`` library).

Payments are on when ``STRIPE_API_KEY`` and ``STRIPE_WEBHOOK_SECRET`` are set
(:func:`payments_configured`); without them the embedded default runs on granted tokens and
checkout is refused. ``BITBUDDIES_STRIPE_API_BASE`` points the client at another server (the
Stripe fake in ``tests/fakes/stripe_server.py``). Those settings are the API's; Airflow tasks
(the sticker order's refund) pass a :class:`StripeAccount` read from the Airflow connection
``bitbuddies_stripe`` (``plugins/bitbuddies_airflow/hooks.py``).

Money rules: every POST carries an ``Idempotency-Key`` derived from what it is for, so a retried
call replays Stripe's first answer instead of paying or refunding twice; tokens are credited only
from the signed ``checkout.session.completed`` webhook (never from the browser's return), keyed
by the Checkout Session (``ledger.credit_purchase``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import stripe

from include import ledger
from include.settings import get_settings

log = logging.getLogger(__name__)


class PaymentsNotConfigured(RuntimeError):
    """STRIPE_API_KEY / STRIPE_WEBHOOK_SECRET are not set."""


class PaymentError(RuntimeError):
    """Stripe refused or could not be reached."""


class InvalidWebhook(ValueError):
    """A webhook whose signature, timestamp or payload does not verify."""


@dataclass(frozen=True)
class StripeAccount:
    """What a Stripe call needs: the secret key, and another API base (a local fake) when set."""

    api_key: str
    api_base: str = ""

    def __repr__(self) -> str:  # never the key in a log line or a traceback
        return f"StripeAccount(api_key={'***' if self.api_key else ''!r}, api_base={self.api_base!r})"


@dataclass(frozen=True)
class TokenPack:
    id: str
    tokens: int
    price_cents: int
    currency: str = "usd"

    @property
    def name(self) -> str:
        return f"{self.tokens} BitBuddies tokens"


TOKEN_PACKS: dict[str, TokenPack] = {
    pack.id: pack
    for pack in (
        TokenPack("pack_10", tokens=10, price_cents=500),
        TokenPack("pack_30", tokens=30, price_cents=1200),
        TokenPack("pack_100", tokens=100, price_cents=3500),
    )
}

# Metadata "kind" of a Checkout Session: who fulfils it when the webhook arrives.
KIND_TOKEN_PACK = "token_pack"
KIND_STICKER_ORDER = "sticker_order"


def payments_configured() -> bool:
    settings = get_settings()
    return bool(settings.stripe_api_key.get_secret_value() and settings.stripe_webhook_secret.get_secret_value())


def client(account: StripeAccount | None = None) -> stripe.StripeClient:
    """A Stripe client for ``account``; without one, for the settings' account (the API's)."""
    if account is None:
        settings = get_settings()
        if not payments_configured():
            raise PaymentsNotConfigured("payments are not configured (set STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET)")
        account = StripeAccount(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
    if not account.api_key:
        raise PaymentsNotConfigured("payments are not configured: no Stripe secret key")
    base = {"api": account.api_base.rstrip("/")} if account.api_base else None
    # Network retries reuse the request's Idempotency-Key, so they are safe for money.
    return stripe.StripeClient(account.api_key, base_addresses=base, max_network_retries=2)


def create_checkout_session(
    *,
    kind: str,
    reference: str,
    user_id: int,
    line_items: list[dict[str, Any]],
    metadata: dict[str, str],
    idempotency_key: str,
    success_url: str,
    cancel_url: str,
    customer_email: str | None = None,
) -> dict:
    """A Checkout Session in payment mode; ``metadata.kind`` routes its webhook. Returns the session as a dict."""
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": line_items,
        "client_reference_id": reference,
        "metadata": {"kind": kind, "user_id": str(user_id), **metadata},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if customer_email:
        params["customer_email"] = customer_email
    try:
        session = client().v1.checkout.sessions.create(params, {"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise PaymentError(f"Stripe refused the checkout session: {exc.user_message or exc}") from exc
    return session.to_dict()


def checkout_token_pack(user_id: int, email: str | None, pack_id: str, request_key: str) -> dict:
    """A Checkout Session for a token pack; ``request_key`` (the client's or a fresh one) makes it idempotent."""
    pack = TOKEN_PACKS[pack_id]
    base = get_settings().public_base_url.rstrip("/")
    return create_checkout_session(
        kind=KIND_TOKEN_PACK,
        reference=f"user:{user_id}",
        user_id=user_id,
        line_items=[
            {
                "quantity": 1,
                "price_data": {"currency": pack.currency, "unit_amount": pack.price_cents, "product_data": {"name": pack.name}},
            }
        ],
        metadata={"pack": pack.id, "tokens": str(pack.tokens)},
        idempotency_key=f"checkout:tokens:{user_id}:{request_key}",
        success_url=f"{base}/tokens/return?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}/tokens?checkout=cancelled",
        customer_email=email,
    )


def refund_payment(
    payment_intent: str, amount_cents: int | None, idempotency_key: str, reason: str | None = None, account: StripeAccount | None = None
) -> dict:
    """Refund a payment once: retried with the same key, Stripe replays the first refund.

    ``account``: whose Stripe key pays it back (an Airflow task's, from its connection); the
    settings' when omitted."""
    params: dict[str, Any] = {"payment_intent": payment_intent}
    if amount_cents is not None:
        params["amount"] = amount_cents
    if reason:
        params["reason"] = reason
    try:
        refund = client(account).v1.refunds.create(params, {"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise PaymentError(f"Stripe refused the refund of {payment_intent}: {exc.user_message or exc}") from exc
    return refund.to_dict()


def verify_webhook(payload: bytes, signature_header: str | None) -> dict:
    """The event a webhook delivered, after checking its signature on the raw body (5 minutes tolerance)."""
    secret = get_settings().stripe_webhook_secret.get_secret_value()
    if not secret:
        raise PaymentsNotConfigured("payments are not configured (set STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET)")
    try:
        event = stripe.Webhook.construct_event(payload, signature_header, secret, api_key=get_settings().stripe_api_key.get_secret_value())
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(f"invalid Stripe signature: {exc}") from exc
    except ValueError as exc:
        raise InvalidWebhook(f"invalid webhook payload: {exc}") from exc
    return event.to_dict()


def fulfil_token_pack(session: dict) -> ledger.LedgerEntry | None:
    """Credit a paid token-pack session exactly once; None while it is not paid yet (async payment methods)."""
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        log.info("checkout session %s is %s: nothing to credit yet", session.get("id"), session.get("payment_status"))
        return None
    metadata = session.get("metadata") or {}
    pack = TOKEN_PACKS.get(metadata.get("pack", ""))
    if pack is None:
        raise ValueError(f"checkout session {session.get('id')} names no known token pack: {metadata!r}")
    # The metadata is ours and signed, but the amount is what was actually paid: check it.
    if session.get("amount_total") != pack.price_cents:
        raise ValueError(f"checkout session {session.get('id')} paid {session.get('amount_total')}, pack {pack.id} costs {pack.price_cents}")
    return ledger.credit_purchase(int(metadata["user_id"]), pack.tokens, session["id"])
