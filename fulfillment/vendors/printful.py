"""A Printful-style print vendor over HTTP (httpx), and its webhook payloads.

The API spoken (Printful v1 shape):

- ``POST /orders?confirm=true`` ``{"external_id", "recipient", "items": [{"variant_id",
  "quantity", "files": [{"url"}]}]}`` -> ``{"code": 200, "result": <order>}``
- ``GET /orders/@{external_id}`` -> ``{"code": 200, "result": <order>}`` or 404
- an order has ``id``, ``external_id``, ``status`` (``draft|pending|inprocess|onhold|partial|
  fulfilled|failed|canceled``) and ``shipments`` (``carrier``, ``tracking_number``,
  ``tracking_url``)
- webhooks ``{"type": "package_shipped", "data": {"shipment", "order"}}`` and
  ``{"type": "order_failed", "data": {"reason", "order"}}``

Our order id is the ``external_id``, which makes submitting idempotent: ``submit`` first looks
the order up by external id, and if a create races or is retried after a lost response, the
vendor's "already exists" answer (or its returning the existing order) resolves to that order.
Retries on 429, 5xx and transport errors are safe for the same reason.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import httpx

from fulfillment.vendors.base import PrintVendor, ShippingAddress, VendorError, VendorEvent, VendorJob, VendorJobState

VENDOR_NAME = "printful"
# Vendor order status -> our state. "partial" means some packages left: the sheet is printed.
_STATES = {
    "draft": VendorJobState.SUBMITTED,
    "pending": VendorJobState.SUBMITTED,
    "inprocess": VendorJobState.SUBMITTED,
    "onhold": VendorJobState.SUBMITTED,
    "partial": VendorJobState.PRINTED,
    "fulfilled": VendorJobState.SHIPPED,
    "failed": VendorJobState.FAILED,
    "canceled": VendorJobState.FAILED,
}
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class PrintfulVendor(PrintVendor):
    name = VENDOR_NAME

    def __init__(
        self,
        base_url: str,
        api_key: str,
        variant_id: int,
        *,
        client: httpx.Client | None = None,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 20.0,
    ) -> None:
        if not api_key:
            raise ValueError("the Printful vendor needs an API key (the password of the Airflow connection bitbuddies_printful, BITBUDDIES_PRINTFUL_API_KEY for the API)")
        if variant_id <= 0:
            raise ValueError("the Printful vendor needs a sticker sheet variant (BITBUDDIES_PRINTFUL_STICKER_VARIANT_ID)")
        self.variant_id = variant_id
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self._client = client or httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_seconds,
        )

    def close(self) -> None:
        self._client.close()

    # -- the vendor interface -------------------------------------------------------------

    def submit(
        self, order_id: str, pdf_key: str, address: ShippingAddress, *, pdf_url: str = "", quantity: int = 1
    ) -> VendorJob:
        if not pdf_url:
            raise VendorError("Printful downloads the sheet itself: submit needs pdf_url")
        if quantity < 1:
            raise VendorError("quantity must be at least 1")
        existing = self._find(order_id)
        if existing is not None:
            return job_from_order(existing)
        body = {
            "external_id": order_id,
            "recipient": _recipient(address),
            "items": [
                {
                    "variant_id": self.variant_id,
                    "quantity": quantity,
                    "external_id": f"{order_id}-sheet",
                    "name": f"BitBuddies sticker sheet {order_id}",
                    "files": [{"type": "default", "url": pdf_url, "filename": pdf_key.rsplit("/", 1)[-1]}],
                }
            ],
        }
        response = self._request("POST", "/orders", params={"confirm": "true"}, json=body)
        if response.status_code in (400, 409) and _says_duplicate(response):
            existing = self._find(order_id)
            if existing is not None:
                return job_from_order(existing)
        return job_from_order(self._result(response, f"create order {order_id}"))

    def status(self, job: VendorJob) -> VendorJob:
        order = self._find(job.order_id)
        if order is None:
            raise VendorError(f"Printful has no order with external id {job.order_id}")
        return job_from_order(order)

    # -- HTTP -------------------------------------------------------------------------------

    def _find(self, order_id: str) -> dict | None:
        response = self._request("GET", f"/orders/@{quote(order_id, safe='')}")
        if response.status_code == 404:
            return None
        return self._result(response, f"look up order {order_id}")

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        last_error = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last_error = f"{type(error).__name__}: {error}"
                continue
            if response.status_code not in _RETRYABLE_STATUS:
                return response
            last_error = f"HTTP {response.status_code}"
        raise VendorError(f"Printful {method} {path} failed after {self.attempts} attempts: {last_error}", retryable=True)

    @staticmethod
    def _result(response: httpx.Response, action: str) -> dict:
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code != 200 or not isinstance(payload.get("result"), dict):
            message = (payload.get("error") or {}).get("message") or payload.get("result") or response.text[:200]
            raise VendorError(f"Printful could not {action}: HTTP {response.status_code} {message}")
        return payload["result"]


def _recipient(address: ShippingAddress) -> dict:
    recipient = {
        "name": address.name,
        "address1": address.address1,
        "city": address.city,
        "zip": address.zip,
        "country_code": address.country_code.upper(),
    }
    for optional in ("address2", "state_code", "email", "phone"):
        if value := getattr(address, optional):
            recipient[optional] = value
    return recipient


def _says_duplicate(response: httpx.Response) -> bool:
    try:
        payload = response.json()
    except ValueError:
        return False
    message = str((payload.get("error") or {}).get("message") or payload.get("result") or "").lower()
    return "external" in message and ("exist" in message or "already" in message or "duplicate" in message)


def job_from_order(order: dict) -> VendorJob:
    """Our view of a vendor order: state, and tracking from its latest shipment."""
    status = str(order.get("status", ""))
    state = _STATES.get(status)
    if state is None:
        raise VendorError(f"Printful order {order.get('id')} has an unknown status {status!r}")
    shipments = order.get("shipments") or []
    latest = shipments[-1] if shipments else {}
    return VendorJob(
        vendor=VENDOR_NAME,
        order_id=str(order.get("external_id") or ""),
        job_id=str(order.get("id")),
        state=state,
        tracking_number=str(latest.get("tracking_number") or ""),
        tracking_url=str(latest.get("tracking_url") or ""),
        carrier=str(latest.get("carrier") or ""),
        error=str(order.get("error") or "") if state == VendorJobState.FAILED else "",
        detail={"status": status},
    )


def parse_webhook(payload: bytes | str | dict) -> VendorEvent | None:
    """A ``package_shipped`` or ``order_failed`` webhook as a ``VendorEvent``; None for other types.

    Printful does not sign webhooks: the receiving endpoint should be a URL with a secret in it,
    and the state should be confirmed with ``status`` before money moves (a refund).
    """
    if isinstance(payload, (bytes, str)):
        try:
            payload = json.loads(payload)
        except ValueError as error:
            raise ValueError(f"webhook body is not JSON: {error}") from error
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise ValueError("webhook body has no data object")
    kind = payload.get("type")
    data = payload["data"]
    order = data.get("order") or {}
    order_id = str(order.get("external_id") or "")
    if kind not in ("package_shipped", "order_failed"):
        return None
    if not order_id:
        raise ValueError(f"{kind} webhook names no order external_id")
    if kind == "package_shipped":
        shipment = data.get("shipment") or {}
        return VendorEvent(
            vendor=VENDOR_NAME,
            kind=kind,
            order_id=order_id,
            state=VendorJobState.SHIPPED,
            tracking_number=str(shipment.get("tracking_number") or ""),
            tracking_url=str(shipment.get("tracking_url") or ""),
            carrier=str(shipment.get("carrier") or ""),
        )
    return VendorEvent(
        vendor=VENDOR_NAME,
        kind=kind,
        order_id=order_id,
        state=VendorJobState.FAILED,
        reason=str(data.get("reason") or "the print vendor reported a failure"),
    )
