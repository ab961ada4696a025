"""A local stand-in for Pushover's message API, served from a thread.

Speaks ``POST /1/messages.json`` with Pushover's form fields and validates them the way
Pushover does: a known application ``token`` and ``user`` key, a non-blank ``message`` of at
most 1024 characters, ``title`` <= 250, ``url`` <= 512, ``url_title`` <= 100, ``priority``
-2..2 (2 needs ``retry`` and ``expire``). Accepted: 200 ``{"status": 1, "request": ...}``;
refused: 400 ``{"status": 0, "errors": [...], <field>: "invalid", "request": ...}``.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from urllib.parse import parse_qs

from tests.fakes.local_http import JsonHandler, LocalHTTPFake


class FakePushover(LocalHTTPFake):
    def __init__(self, token: str | None = None, user: str | None = None) -> None:
        # Pushover keys are 30 characters of letters and digits.
        self.token = token or secrets.token_hex(15)
        self.user = user or secrets.token_hex(15)
        self.messages: list[dict[str, str]] = []  # accepted
        self.refused: list[dict] = []
        self._lock = threading.Lock()
        self._listen()

    def validate(self, form: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        fields, errors = {}, []
        if form.get("token") != self.token:
            fields["token"] = "invalid"
            errors.append("application token is invalid")
        if form.get("user") != self.user:
            fields["user"] = "invalid"
            errors.append("user identifier is not a valid user, group, or subscribed user key")
        message = form.get("message", "")
        if not message.strip():
            fields["message"] = "cannot be blank"
            errors.append("message cannot be blank")
        elif len(message) > 1024:
            fields["message"] = "is too long"
            errors.append("message cannot be longer than 1024 characters")
        for name, limit in (("title", 250), ("url", 512), ("url_title", 100)):
            if len(form.get(name, "")) > limit:
                fields[name] = "is too long"
                errors.append(f"{name} cannot be longer than {limit} characters")
        if "priority" in form:
            try:
                priority = int(form["priority"])
            except ValueError:
                priority = 99
            if not -2 <= priority <= 2:
                fields["priority"] = "is invalid"
                errors.append("priority is invalid")
            elif priority == 2 and not (form.get("retry") and form.get("expire")):
                fields["retry"] = "must be supplied with priority=2"
                errors.append("retry and expire must be supplied with emergency priority")
        return fields, errors

    def _handler_class(self):
        fake = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                request_id = str(uuid.uuid4())
                if self.path.split("?")[0] != "/1/messages.json":
                    return self._reply(404, {"status": 0, "errors": ["not found"], "request": request_id})
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if "application/x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
                    form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                else:
                    form = {}
                fields, errors = fake.validate(form)
                with fake._lock:
                    if errors:
                        fake.refused.append({"form": form, "errors": errors})
                    else:
                        fake.messages.append(form)
                if errors:
                    return self._reply(400, {**fields, "status": 0, "errors": errors, "request": request_id})
                return self._reply(200, {"status": 1, "request": request_id})

        return Handler
