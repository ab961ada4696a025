"""An in-memory provider speaking fal.ai's queue protocol, as an httpx transport for unit tests.

The real local model server is exercised by its own tests and the end-to-end tests; this one lets
operator and trigger tests script exact answers (states, failures, transient errors) quickly.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import httpx

BASE = "http://provider.test"


@dataclass
class FakeJob:
    model_id: str
    payload: dict
    states: list[str] = field(default_factory=lambda: ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"])
    result: dict = field(default_factory=lambda: {"image": {"url": f"{BASE}/files/x.png"}})
    error: str | None = None
    error_type: str | None = None
    result_status: int = 200
    polls: int = 0  # status answers given, by a poll or on a stream
    streams: int = 0  # status streams opened
    cancelled: bool = False
    queue_position: int = 0  # reported while IN_QUEUE


class FakeQueue:
    def __init__(self):
        self.jobs: dict[str, FakeJob] = {}
        self.keys: dict[str, str] = {}
        self.submissions: list[tuple[str, str | None]] = []
        self.submit_headers: list[httpx.Headers] = []
        self.transient_failures = 0  # next N requests answer 503
        self.next_job: dict = {}
        self.reject_submit: str | None = None  # answer every submit 422 with this detail
        self.stream_status = 200  # another value: the status stream answers it (a provider without one: 404)
        self._ids = itertools.count(1)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.transient_failures > 0:
            self.transient_failures -= 1
            return httpx.Response(503, json={"detail": "busy"})
        path = request.url.path.strip("/")
        if request.method == "POST":
            key = request.headers.get("Idempotency-Key")
            self.submissions.append((path, key))
            self.submit_headers.append(request.headers)
            if self.reject_submit is not None:
                return httpx.Response(422, json={"detail": self.reject_submit})
            if key and key in self.keys:
                rid = self.keys[key]
            else:
                rid = f"req{next(self._ids)}"
                self.jobs[rid] = FakeJob(path, json.loads(request.content), **self.next_job)
                if key:
                    self.keys[key] = rid
            base = f"{BASE}/{path}/requests/{rid}"
            return httpx.Response(
                200,
                json={"request_id": rid, "status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"},
            )
        parts = path.split("/")
        rid = parts[parts.index("requests") + 1]
        job = self.jobs.get(rid)
        if job is None:
            return httpx.Response(404, json={"detail": f"Request {rid!r} not found"})
        if path.endswith("/status"):
            body = self._next_status(job)
            return httpx.Response(200 if body["status"] == "COMPLETED" else 202, json=body)
        if path.endswith("/status/stream"):
            # fal's stream: every state left in the script, one event each, closed after COMPLETED.
            if self.stream_status != 200:
                return httpx.Response(self.stream_status, json={"detail": "no stream"})
            job.streams += 1
            events = []
            while True:
                body = self._next_status(job)
                events.append(f": keep-alive\n\ndata: {json.dumps(body)}\n\n")
                if body["status"] == "COMPLETED" or job.polls >= len(job.states):
                    break
            return httpx.Response(200, content="".join(events).encode(), headers={"content-type": "text/event-stream"})
        if path.endswith("/cancel"):
            job.cancelled = True
            return httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"})
        if job.error:
            return httpx.Response(job.result_status, json={"detail": job.error, "error_type": job.error_type})
        return httpx.Response(200, json=job.result)

    @staticmethod
    def _next_status(job: FakeJob) -> dict:
        state = job.states[min(job.polls, len(job.states) - 1)]
        job.polls += 1
        body = {"status": state}
        if state == "IN_QUEUE":
            body["queue_position"] = job.queue_position
        if state == "COMPLETED" and job.error:
            body.update(error=job.error, error_type=job.error_type)
        return body

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)
