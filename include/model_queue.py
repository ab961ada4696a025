"""Client for model providers that speak fal.ai's queue protocol.

Both providers (the local model server and fal.ai) answer the same protocol:
``POST {base}/{model_id}`` submits and returns the job's ``status_url``, ``response_url`` and
``cancel_url``; the status says ``IN_QUEUE`` / ``IN_PROGRESS`` / ``COMPLETED``; the result is
fetched from the response URL. A job that failed is ``COMPLETED`` with an ``error`` and its
result answers 4xx (a business error: retrying cannot help) or 5xx.

This module owns the wire format and the retry policies for talking to a provider; it knows
nothing about Airflow. The sync client serves workers (submit, fetch, cancel), the async one
the triggerer (status). A job's status is read with one poll, or followed on fal's status stream
(``{status_url}/stream``, server-sent events pushed on every change: a wait hears of completion
at once instead of up to a poll interval later). Retry policies, by step:

- worker calls (submit, result, cancel) retry transient answers (connection errors, 408/425/429/
  5xx) a few times with exponential backoff and full jitter, honouring ``Retry-After``;
- polling rides out transient trouble for as long as the job's deadline allows
  (:func:`sleep_backoff`, capped), and stops at once on a permanent refusal
  (:class:`ProviderRejected`: bad key, unknown job);
- business errors (:data:`BUSINESS_ERROR_TYPES`, or a non-retryable 4xx) are never retried.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from include.http import tls_context

log = logging.getLogger(__name__)

# fal.ai's per-request lifetime of the files a job writes to its CDN (the intermediates: cut-outs,
# frames, videos); expired files are deleted for good.
LIFECYCLE_HEADER = "X-Fal-Object-Lifecycle-Preference"
# Transient answers worth retrying: rate limits and provider-side trouble.
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
# error_type values that mean the input itself can never succeed.
BUSINESS_ERROR_TYPES = {
    "invalid_image",
    "invalid_input",
    "no_usable_subject",
    "subject_too_small",
    "poor_cutout",
    "nsfw",
    "content_policy_violation",
}


class JobState(str, enum.Enum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"

    def is_terminal(self) -> bool:
        return self is JobState.COMPLETED


@dataclass(frozen=True)
class Job:
    """A submitted job: everything needed to find it again, JSON-able for XCom and task state."""

    model_id: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(**{k: data[k] for k in ("model_id", "request_id", "status_url", "response_url", "cancel_url")})


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    queue_position: int | None = None
    error: str | None = None
    error_type: str | None = None
    inference_time: float | None = None
    logs: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.state.is_terminal() and self.error is not None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobStatus:
        metrics = data.get("metrics") or {}
        return cls(
            state=JobState(data["status"]),
            queue_position=data.get("queue_position"),
            error=data.get("error"),
            error_type=data.get("error_type"),
            inference_time=metrics.get("inference_time"),
            logs=list(data.get("logs") or []),
        )


class ProviderError(Exception):
    """The provider could not be reached or kept answering with transient errors."""


class ProviderRejected(ProviderError):
    """The provider refused a request for good (bad key, unknown job): asking again cannot help."""

    def __init__(self, message: str, status_code: int):
        super().__init__(message)
        self.status_code = status_code


def _raise_for_status_poll(resp: httpx.Response, what: str) -> None:
    """Status polls: transient answers raise ProviderError, permanent ones ProviderRejected."""
    if resp.status_code < 400:
        return
    message = f"{what}: HTTP {resp.status_code} {resp.text[:200]}"
    if resp.status_code in RETRYABLE_STATUS:
        raise ProviderError(message)
    raise ProviderRejected(message, resp.status_code)


def stream_url(status_url: str) -> str:
    """fal's status stream of a job: its status URL plus ``/stream`` (server-sent events)."""
    return f"{status_url.rstrip('/')}/stream"


class _EventLines:
    """Server-sent events, line by line: the ``data:`` of each event as a JobStatus (comments and
    other fields are skipped; a multi-line ``data`` is joined as the SSE format says)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> JobStatus | None:
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
            return None
        if line or not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        try:
            return JobStatus.from_json(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"status stream: not a status event: {data[:200]!r}") from exc


# A status stream's quiet connection gets a comment line every 15 s (fal's keep-alive): a read
# waits this long before the connection counts as lost.
STREAM_READ_TIMEOUT_S = 45.0


class ModelJobFailed(Exception):
    """The job ran and failed. ``business`` is True when the input can never succeed."""

    def __init__(self, message: str, error_type: str | None, *, business: bool):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.business = business


def is_business_error(status_code: int | None, error_type: str | None) -> bool:
    if error_type in BUSINESS_ERROR_TYPES:
        return True
    return status_code is not None and 400 <= status_code < 500 and status_code not in RETRYABLE_STATUS


@dataclass
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_delay)
            except ValueError:
                pass
        # Exponential backoff with full jitter so that many clients do not retry in lockstep.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def _auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Key {api_key}"} if api_key else {}


def _failure_from_response(resp: httpx.Response) -> ModelJobFailed:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI-style validation errors
        detail = "; ".join(str(d.get("msg", d)) for d in detail)
    error_type = (body.get("error_type") if isinstance(body, dict) else None) or resp.headers.get("X-Fal-Error-Type")
    message = str(detail or f"model job failed with HTTP {resp.status_code}")
    return ModelJobFailed(message, error_type, business=is_business_error(resp.status_code, error_type))


class QueueClient:
    """Synchronous client (workers): submit, fetch, cancel, and a one-off status check."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        media_expiry_seconds: int | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        # How long the provider may keep the files a job makes (fal's CDN honours it; the local
        # model server's are purged by the retention DAG).
        self.media_expiry_seconds = media_expiry_seconds
        # The process's one TLS context (include/http.py): a triggerer holds a client per waiting job.
        self._http = httpx.Client(timeout=timeout, headers=_auth_headers(api_key), transport=transport,
                                  verify=tls_context())

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        last: Exception | None = None
        for attempt in range(self.retry.attempts):
            try:
                resp = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                last = exc
                time.sleep(self.retry.delay(attempt))
                continue
            if resp.status_code in RETRYABLE_STATUS and attempt + 1 < self.retry.attempts:
                last = ProviderError(f"{method} {url}: HTTP {resp.status_code}")
                time.sleep(self.retry.delay(attempt, resp.headers.get("Retry-After")))
                continue
            return resp
        raise ProviderError(f"{method} {url} failed after {self.retry.attempts} attempts: {last}")

    def submit(self, model_id: str, payload: dict[str, Any], idempotency_key: str | None = None) -> Job:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if self.media_expiry_seconds is not None:
            headers[LIFECYCLE_HEADER] = json.dumps({"expiration_duration_seconds": self.media_expiry_seconds})
        resp = self._request("POST", f"{self.base_url}/{model_id}", json=payload, headers=headers)
        if resp.status_code >= 400:
            raise _failure_from_response(resp)
        data = resp.json()
        return Job(model_id, data["request_id"], data["status_url"], data["response_url"], data["cancel_url"])

    def status(self, job: Job) -> JobStatus:
        resp = self._request("GET", job.status_url, params={"logs": 1})
        _raise_for_status_poll(resp, f"status of {job.request_id}")
        return JobStatus.from_json(resp.json())

    def watch(self, job: Job, timeout: float) -> Iterator[JobStatus]:
        """The job's status as the provider pushes it (its status stream): now, then on every
        change, ending after COMPLETED; a read that gets nothing for ``timeout`` s ends it too
        (``httpx.ReadTimeout``). Raises as :meth:`status` does when the stream cannot be opened."""
        with self._http.stream("GET", stream_url(job.status_url), params={"logs": 0},
                               timeout=httpx.Timeout(self._http.timeout.connect, read=timeout)) as resp:
            if resp.status_code >= 400:
                resp.read()
                _raise_for_status_poll(resp, f"status stream of {job.request_id}")
            events = _EventLines()
            for line in resp.iter_lines():
                status = events.feed(line)
                if status is not None:
                    yield status

    def result(self, job: Job) -> dict[str, Any]:
        resp = self._request("GET", job.response_url)
        if resp.status_code >= 400:
            raise _failure_from_response(resp)
        return resp.json()

    def cancel(self, job: Job) -> None:
        resp = self._request("PUT", job.cancel_url)
        if resp.status_code not in (200, 202, 400):
            raise ProviderError(f"cancel of {job.request_id}: HTTP {resp.status_code}")


class AsyncQueueClient:
    """Asynchronous, read-only client for the triggerer: it only ever reads status."""

    def __init__(self, api_key: str | None = None, *, timeout: float = 15.0, transport: httpx.AsyncBaseTransport | None = None):
        self._http = httpx.AsyncClient(timeout=timeout, headers=_auth_headers(api_key), transport=transport,
                                       verify=tls_context())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def status(self, status_url: str) -> JobStatus:
        """One poll. Raises ``httpx.TransportError`` or ``ProviderError`` on transient trouble,
        ``ProviderRejected`` when the provider refuses for good."""
        resp = await self._http.get(status_url, params={"logs": 1})
        _raise_for_status_poll(resp, "status")
        return JobStatus.from_json(resp.json())

    async def watch(self, status_url: str) -> AsyncIterator[JobStatus]:
        """The job's status as the provider pushes it (fal's status stream): now, then on every
        change, ending after COMPLETED. Raises as :meth:`status` does (and ``httpx.ReadTimeout``
        when the connection stays silent past the keep-alives)."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT_S)
        async with self._http.stream("GET", stream_url(status_url), params={"logs": 0}, timeout=timeout) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                _raise_for_status_poll(resp, "status stream")
            events = _EventLines()
            async for line in resp.aiter_lines():
                status = events.feed(line)
                if status is not None:
                    yield status


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff for the ``attempt``-th failure in a row, capped, with jitter (50-100 %)."""
    return min(cap, base * 2 ** min(attempt, 16)) * random.uniform(0.5, 1.0)


async def sleep_backoff(attempt: int, base: float, cap: float) -> None:
    await asyncio.sleep(backoff_delay(attempt, base, cap))
