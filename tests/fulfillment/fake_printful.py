"""A small local server speaking the Printful-style order API, for testing the vendor adapter.

Runs in a thread on a free port (real HTTP, real httpx). It keeps orders in memory, enforces the
Bearer key, answers a duplicate ``external_id`` the way it is configured to (return the
existing order, or Printful's 400 "already exists" error), can fail the next N requests with a
given status to exercise retries, and lets a test move an order along and get the webhook body
the vendor would send.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class FakePrintful:
    def __init__(self, api_key: str = "test-key", duplicate_mode: str = "return_existing") -> None:
        self.api_key = api_key
        self.duplicate_mode = duplicate_mode  # "return_existing" or "error"
        self.orders: dict[int, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_next: list[int] = []  # statuses to answer the next requests with
        self.drop_create_response = False  # create the order, then answer 503 (a lost response)
        self._next_id = 1000
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval keeps shutdown (every test teardown) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakePrintful:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what the vendor does on its side ----------------------------------------------------

    def by_external_id(self, external_id: str) -> dict | None:
        return next((order for order in self.orders.values() if order["external_id"] == external_id), None)

    def ship(self, external_id: str, tracking_number: str, carrier: str = "USPS") -> dict:
        """Fulfil the order and return the ``package_shipped`` webhook body."""
        order = self.by_external_id(external_id)
        shipment = {
            "id": len(order["shipments"]) + 1,
            "carrier": carrier,
            "service": "First Class",
            "tracking_number": tracking_number,
            "tracking_url": f"https://track.example/{tracking_number}",
        }
        order["shipments"].append(shipment)
        order["status"] = "fulfilled"
        return {"type": "package_shipped", "created": 1764140000, "retries": 0, "store": 1, "data": {"shipment": shipment, "order": order}}

    def fail(self, external_id: str, reason: str) -> dict:
        """Fail the order and return the ``order_failed`` webhook body."""
        order = self.by_external_id(external_id)
        order["status"] = "failed"
        return {"type": "order_failed", "created": 1764140000, "retries": 0, "store": 1, "data": {"reason": reason, "order": order}}

    # -- HTTP ---------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, message: str) -> None:
                self._send(status, {"code": status, "result": message, "error": {"reason": "Error", "message": message}})

            def _guard(self) -> bool:
                fake.requests.append((self.command, self.path))
                if fake.fail_next:
                    self._error(fake.fail_next.pop(0), "injected failure")
                    return False
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._error(401, "Unauthorized")
                    return False
                return True

            def do_GET(self) -> None:
                if not self._guard():
                    return
                path = urlparse(self.path).path
                if not path.startswith("/orders/@"):
                    return self._error(404, "Not found")
                with fake._lock:
                    order = fake.by_external_id(unquote(path[len("/orders/@") :]))
                if order is None:
                    return self._error(404, "Order not found")
                self._send(200, {"code": 200, "result": order})

            def do_POST(self) -> None:
                if not self._guard():
                    return
                if urlparse(self.path).path != "/orders":
                    return self._error(404, "Not found")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                external_id = body.get("external_id")
                items = body.get("items") or []
                recipient = body.get("recipient") or {}
                if not external_id or not items or not all(recipient.get(k) for k in ("name", "address1", "city", "country_code", "zip")):
                    return self._error(400, "Invalid order")
                if not all(item.get("variant_id") and item.get("files") for item in items):
                    return self._error(400, "Item needs a variant and a print file")
                with fake._lock:
                    existing = fake.by_external_id(external_id)
                    if existing is not None:
                        if fake.duplicate_mode == "error":
                            return self._error(400, "Order with this external ID already exists")
                        return self._send(200, {"code": 200, "result": existing})
                    fake._next_id += 1
                    confirmed = "confirm=true" in (urlparse(self.path).query or "")
                    order = {
                        "id": fake._next_id,
                        "external_id": external_id,
                        "status": "pending" if confirmed else "draft",
                        "recipient": recipient,
                        "items": items,
                        "shipments": [],
                    }
                    fake.orders[order["id"]] = order
                if fake.drop_create_response:
                    fake.drop_create_response = False
                    return self._error(503, "Service unavailable")
                self._send(200, {"code": 200, "result": order})

        return Handler
