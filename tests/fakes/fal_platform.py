"""A local stand-in for fal.ai's Platform API, the part that deletes what fal keeps of a request.

Speaks ``DELETE /v1/models/requests/{request_id}/payloads`` as documented by fal: an admin key as
``Authorization: Key ...`` (another key: 403, none: 401), an optional ``Idempotency-Key``; a known
request's input/output payloads and the CDN files of its output are deleted and the answer is 200
``{"cdn_delete_results": [{"link": ..., "exception": null}, ...]}``; an unknown request is 404.
"""

from __future__ import annotations

import json
import re
import secrets
import threading

from tests.fakes.local_http import JsonHandler, LocalHTTPFake

_PATH = re.compile(r"^/v1/models/requests/([^/]+)/payloads$")


class FakeFalPlatform(LocalHTTPFake):
    def __init__(self) -> None:
        self.admin_key = secrets.token_hex(16)
        # request id -> the CDN links of its output, for every request fal still keeps.
        self.requests: dict[str, list[str]] = {}
        self.deleted: list[str] = []
        self.fail_next = 0  # answer the next N deletions 500
        self._lock = threading.Lock()
        self._listen()

    def keep(self, request_id: str, files: int = 2) -> None:
        self.requests[request_id] = [f"https://v3.fal.media/files/{request_id}/out{i}.png" for i in range(files)]

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1"

    def _handler_class(self):
        fake = self

        class Handler(JsonHandler):
            def do_DELETE(self) -> None:
                match = _PATH.match(self.path.split("?")[0])
                if match is None:
                    return self._reply(404, {"detail": "Not Found"})
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Key "):
                    return self._reply(401, {"detail": "Missing authentication"})
                if auth != f"Key {fake.admin_key}":
                    return self._reply(403, {"detail": "Admin API key required"})
                request_id = match.group(1)
                with fake._lock:
                    if fake.fail_next > 0:
                        fake.fail_next -= 1
                        return self._reply(500, {"detail": "Internal Server Error"})
                    links = fake.requests.pop(request_id, None)
                    if links is None:
                        return self._reply(404, {"detail": f"Request {request_id} not found"})
                    fake.deleted.append(request_id)
                self._reply(200, {"cdn_delete_results": [{"link": link, "exception": None} for link in links]})

        return Handler
