"""A small local stand-in for Airflow's REST API v2, served from a thread.

Speaks the endpoints the application uses, with Airflow's verified behaviour: ``POST
/auth/token`` -> 201 ``{"access_token"}``; bearer auth (401 otherwise); ``POST
/api/v2/dags/{dag_id}/dagRuns`` -> 200, 422 without ``logical_date``, 409 for a duplicate
``dag_run_id`` (nothing created); ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}``.
"""

from __future__ import annotations

import json
import secrets
import threading

from tests.fakes.local_http import JsonHandler, LocalHTTPFake


class FakeAirflow(LocalHTTPFake):
    def __init__(self, username: str = "admin", password: str = "admin") -> None:
        self.username = username
        self.password = password
        self.runs: dict[tuple[str, str], dict] = {}
        self.trigger_attempts: list[str] = []  # every POST dagRuns run id, duplicates included
        self.logins = 0
        self.valid_tokens: set[str] = set()
        self.fail_with_500 = False
        self._lock = threading.Lock()
        self._listen()

    def expire_tokens(self) -> None:
        with self._lock:
            self.valid_tokens.clear()

    def _handler_class(self):
        fake = self

        class Handler(JsonHandler):
            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization", "")
                with fake._lock:
                    return header.startswith("Bearer ") and header[7:] in fake.valid_tokens

            def do_POST(self) -> None:
                if fake.fail_with_500:
                    return self._reply(500, {"detail": "internal error"})
                parts = self.path.strip("/").split("/")
                if self.path == "/auth/token":
                    body = self._body()
                    if body.get("username") != fake.username or body.get("password") != fake.password:
                        return self._reply(401, {"detail": "Invalid credentials"})
                    token = secrets.token_hex(8)
                    with fake._lock:
                        fake.logins += 1
                        fake.valid_tokens.add(token)
                    return self._reply(201, {"access_token": token})
                if len(parts) == 5 and parts[:3] == ["api", "v2", "dags"] and parts[4] == "dagRuns":
                    if not self._authorized():
                        return self._reply(401, {"detail": "Not authenticated"})
                    body = self._body()
                    if "logical_date" not in body:
                        return self._reply(422, {"detail": "logical_date: Field required"})
                    key = (parts[3], body["dag_run_id"])
                    with fake._lock:
                        fake.trigger_attempts.append(body["dag_run_id"])
                        if key in fake.runs:
                            return self._reply(409, {"detail": "DAG run already exists"})
                        run = {"dag_id": parts[3], "dag_run_id": body["dag_run_id"], "conf": body.get("conf"), "state": "queued"}
                        fake.runs[key] = run
                    return self._reply(200, run)
                return self._reply(404, {"detail": "Not Found"})

            def do_GET(self) -> None:
                if fake.fail_with_500:
                    return self._reply(500, {"detail": "internal error"})
                parts = self.path.strip("/").split("/")
                if len(parts) == 6 and parts[:3] == ["api", "v2", "dags"] and parts[4] == "dagRuns":
                    if not self._authorized():
                        return self._reply(401, {"detail": "Not authenticated"})
                    with fake._lock:
                        run = fake.runs.get((parts[3], parts[5]))
                    return self._reply(200, run) if run else self._reply(404, {"detail": "DagRun not found"})
                return self._reply(404, {"detail": "Not Found"})

        return Handler
