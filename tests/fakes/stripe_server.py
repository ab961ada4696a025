"""A local Stripe for tests: the part of Stripe's HTTP API BitBuddies uses, served from a thread.

Talk to it with the real ``stripe`` library (``StripeClient(key, base_addresses={"api": fake.url})``,
which is what ``include.payments`` does when ``BITBUDDIES_STRIPE_API_BASE`` is set). It speaks:

- ``POST /v1/checkout/sessions`` (form-encoded, nested ``metadata[...]`` / ``line_items[0][...]``)
  -> a ``checkout.session`` (``status="open"``, ``payment_status="unpaid"``, ``url`` to pay at);
- ``GET /v1/checkout/sessions/{id}``;
- ``POST /v1/refunds`` (``payment_intent`` and optional ``amount``; a PaymentIntent can never be
  refunded beyond what was paid: 400 ``charge_already_refunded`` / ``amount_too_large``);
- ``GET /v1/events/{id}``;
- ``GET /pay/{session}``: the hosted Checkout page a browser is sent to (``url``); its "Pay"
  button completes the session like ``complete_session`` and redirects to ``success_url``;
- ``Authorization: Bearer sk_...`` on every call (401 otherwise), errors as ``{"error": {...}}``;
- Stripe's ``Idempotency-Key`` semantics on POSTs: the same key with the same parameters replays
  the first answer (status and body, header ``Idempotent-Replayed: true``); the same key with
  other parameters is a 400 ``idempotency_error``.

Test controls (Python, not HTTP):

- ``fake.complete_session(session_id, deliveries=1) -> event``: the customer paid: the session
  becomes ``complete``/``paid`` with a PaymentIntent, a ``checkout.session.completed`` event is
  recorded and delivered ``deliveries`` times;
- ``fake.deliver(event, signature=None) -> int``: POST one event to the webhook target, signed as
  Stripe signs (``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{payload}">`` with the
  webhook secret); pass ``signature`` to send a forged header instead. Returns the HTTP status.
- ``fake.deliver_many(events, shuffle_seed=None, repeat=1)``: duplicates and reordering on demand;
- ``fake.webhook_url`` (a URL) or ``fake.webhook_sender`` (``callable(body: bytes, headers) ->
  status``, e.g. a FastAPI TestClient) says where deliveries go;
- inspection: ``fake.sessions``, ``fake.refunds``, ``fake.events``, ``fake.requests`` (every
  ``(method, path, idempotency_key)``), ``fake.refunded_amount(payment_intent)``.

The ``stripe_fake`` fixture starts one, points the settings at it (``STRIPE_API_KEY``,
``STRIPE_WEBHOOK_SECRET``, ``BITBUDDIES_STRIPE_API_BASE``) and stops it afterwards; import it
into a test module (``from tests.fakes.stripe_server import stripe_fake  # noqa: F401``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl

import httpx
import pytest
from tests.fakes.local_http import LocalHTTPFake

API_KEY = "sk_test_bitbuddies_fake"
WEBHOOK_SECRET = "whsec_bitbuddies_fake"


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def decode_form(body: str) -> dict:
    """Stripe's form encoding (``a[b][0][c]=v``) back into nested dicts and lists."""
    root: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part, following in zip(parts, parts[1:]):
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe sends with ``payload``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.body = status, {"error": {"type": type_, "message": message, **({"code": code} if code else {})}}


class FakeStripe(LocalHTTPFake):
    def __init__(self, api_key: str = API_KEY, webhook_secret: str = WEBHOOK_SECRET) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.sessions: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self.payment_intents: dict[str, dict] = {}  # id -> {"amount": paid, "session": cs id}
        self.requests: list[tuple[str, str, str | None]] = []
        self.webhook_url: str | None = None
        self.webhook_sender: Callable[[bytes, dict[str, str]], int] | None = None
        self._idempotent: dict[str, tuple[str, dict, int, dict]] = {}  # key -> (path, params, status, body)
        self._lock = threading.RLock()
        self._listen()

    # --- the API ---------------------------------------------------------------------------

    def _create_session(self, params: dict) -> dict:
        if params.get("mode") not in ("payment", "setup", "subscription"):
            raise StripeError(400, "invalid_request_error", "Missing required param: mode.", "parameter_missing")
        items = params.get("line_items") or []
        if not items:
            raise StripeError(400, "invalid_request_error", "Missing required param: line_items.", "parameter_missing")
        total, currency = 0, None
        for item in items:
            price = item.get("price_data") or {}
            if "unit_amount" not in price or "currency" not in price:
                raise StripeError(400, "invalid_request_error", "line_items need price_data with unit_amount and currency.")
            total += int(price["unit_amount"]) * int(item.get("quantity", 1))
            currency = price["currency"]
        sid = _new_id("cs")
        session = {
            "id": sid,
            "object": "checkout.session",
            "mode": params["mode"],
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": total,
            "currency": currency,
            "client_reference_id": params.get("client_reference_id"),
            "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata") or {},
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "payment_intent": None,
            "url": f"{self.url}/pay/{sid}",
            "created": int(time.time()),
            "livemode": False,
        }
        self.sessions[sid] = session
        return session

    def _create_refund(self, params: dict) -> dict:
        pi = params.get("payment_intent")
        if pi not in self.payment_intents:
            raise StripeError(400, "invalid_request_error", f"No such payment_intent: '{pi}'", "resource_missing")
        paid = self.payment_intents[pi]["amount"]
        left = paid - self.refunded_amount(pi)
        amount = int(params.get("amount", left))
        if left <= 0:
            raise StripeError(400, "invalid_request_error", f"Charge for {pi} has already been refunded.", "charge_already_refunded")
        if amount <= 0 or amount > left:
            raise StripeError(400, "invalid_request_error", f"Refund amount ({amount}) is greater than unrefunded amount ({left}).", "amount_too_large")
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": self.sessions[self.payment_intents[pi]["session"]]["currency"],
            "payment_intent": pi,
            "reason": params.get("reason"),
            "metadata": params.get("metadata") or {},
            "status": "succeeded",
            "created": int(time.time()),
        }
        self.refunds[refund["id"]] = refund
        return refund

    def _route(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        if method == "POST" and path == "/v1/checkout/sessions":
            return 200, self._create_session(params)
        if method == "POST" and path == "/v1/refunds":
            return 200, self._create_refund(params)
        for prefix, store, what in (("/v1/checkout/sessions/", self.sessions, "checkout.session"), ("/v1/events/", self.events, "event")):
            if method == "GET" and path.startswith(prefix):
                obj = store.get(path[len(prefix):])
                if obj is None:
                    raise StripeError(404, "invalid_request_error", f"No such {what}: '{path[len(prefix):]}'", "resource_missing")
                return 200, obj
        raise StripeError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")

    def handle(self, method: str, path: str, auth: str | None, idempotency_key: str | None, params: dict) -> tuple[int, dict, bool]:
        """One API call -> (status, body, replayed)."""
        with self._lock:
            self.requests.append((method, path, idempotency_key))
            if auth != f"Bearer {self.api_key}":
                return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}}, False
            if method == "POST" and idempotency_key:
                first = self._idempotent.get(idempotency_key)
                if first is not None:
                    if (first[0], first[1]) != (path, params):
                        return 400, {"error": {"type": "idempotency_error", "message": (
                            "Keys for idempotent requests can only be used with the same parameters they were first "
                            f"used with. Try using a key other than '{idempotency_key}' if you meant to execute a different request."
                        )}}, False
                    return first[2], first[3], True
            try:
                status, body = self._route(method, path, params)
            except StripeError as exc:
                status, body = exc.status, exc.body
            if method == "POST" and idempotency_key:
                self._idempotent[idempotency_key] = (path, params, status, body)
            return status, json.loads(json.dumps(body)), False

    # --- test controls -----------------------------------------------------------------------

    def refunded_amount(self, payment_intent: str) -> int:
        return sum(r["amount"] for r in self.refunds.values() if r["payment_intent"] == payment_intent)

    def complete_session(self, session_id: str, deliveries: int = 1) -> dict:
        """The customer paid: complete the session, record and deliver ``checkout.session.completed``."""
        with self._lock:
            session = self.sessions[session_id]
            if session["status"] != "complete":
                pi = _new_id("pi")
                self.payment_intents[pi] = {"amount": session["amount_total"], "session": session_id}
                session.update(status="complete", payment_status="paid", payment_intent=pi)
            event = self.make_event("checkout.session.completed", session)
        for _ in range(deliveries):
            self.deliver(event)
        return event

    def make_event(self, type_: str, obj: dict) -> dict:
        event = {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()),
            "type": type_,
            "livemode": False,
            "pending_webhooks": 1,
            "data": {"object": json.loads(json.dumps(obj))},
        }
        self.events[event["id"]] = event
        return event

    def deliver(self, event: dict, signature: str | None = None) -> int:
        payload = json.dumps(event, indent=2)  # Stripe sends pretty-printed JSON; the signature covers these bytes
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": signature or sign(payload, self.webhook_secret)}
        if self.webhook_sender is not None:
            return self.webhook_sender(payload.encode(), headers)
        if self.webhook_url is None:
            raise RuntimeError("set webhook_url or webhook_sender before delivering events")
        return httpx.post(self.webhook_url, content=payload.encode(), headers=headers, timeout=30).status_code

    def deliver_many(self, events: list[dict], shuffle_seed: int | None = None, repeat: int = 1) -> list[int]:
        batch = [e for e in events for _ in range(repeat)]
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(batch)
        return [self.deliver(e) for e in batch]

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                path, _, query = self.path.partition("?")
                if path.startswith("/pay/"):
                    return self._checkout_page(method, path.removeprefix("/pay/"))
                params = decode_form(raw if method == "POST" else query)
                status, body, replayed = fake.handle(
                    method, path, self.headers.get("Authorization"), self.headers.get("Idempotency-Key"), params
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", _new_id("req"))
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                self.end_headers()
                self.wfile.write(data)

            def _checkout_page(self, method: str, session_id: str) -> None:
                """The hosted Checkout page a customer's browser is sent to: "Pay" completes the
                session (the signed webhook is delivered first, as Stripe does) and redirects to
                the session's success_url, "Cancel" to its cancel_url."""
                session = fake.sessions.get(session_id)
                if session is None:
                    self.send_error(404)
                    return
                if method == "POST":
                    fake.complete_session(session_id)
                    location = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
                    self.send_response(303)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                amount = f"{session['amount_total'] / 100:.2f} {session['currency'].upper()}"
                page = (
                    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Checkout (test)</title></head>"
                    f"<body><main><h1>Pay {amount}</h1><form method='post'><button type='submit'>Pay</button></form>"
                    f"<p><a href='{session['cancel_url']}'>Cancel</a></p></main></body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler


@pytest.fixture
def stripe_fake(monkeypatch):
    """A running FakeStripe with the settings pointed at it (payments configured)."""
    from include.settings import get_settings

    fake = FakeStripe().start()
    monkeypatch.setenv("STRIPE_API_KEY", fake.api_key)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", fake.webhook_secret)
    monkeypatch.setenv("BITBUDDIES_STRIPE_API_BASE", fake.url)
    get_settings.cache_clear()
    yield fake
    fake.stop()
    get_settings.cache_clear()
