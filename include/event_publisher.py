"""Publishing progress events from the pipeline: task callbacks (sync) and the triggerer (async).

Pipeline processes (workers, the triggerer; maybe on other machines) post events to the API's
internal endpoint, which stores them (``include/events.py``). A short, bounded number of quick
attempts, every error swallowed and logged: progress must never fail or slow a generation.

The retry policy is written once, in :func:`_attempts`, a generator that says what to do next
(post, or pause) and is told what happened; :func:`publish` and :func:`apublish` only carry that
out with a blocking or an async HTTP client (a loop of two lines each), so the two cannot drift
apart. The blocking client is one per process, kept open (a task process publishes when its
stage starts and when it ends: the second post reuses the connection); every client shares the
process's TLS context (``include/http.py``).

Where the endpoint is and its bearer token come as an :class:`EventsEndpoint`: Airflow's
callbacks and triggers pass the one of the Airflow connection ``bitbuddies_api``
(``plugins/bitbuddies_airflow/hooks.py``); other callers (the CLI's tests, benchmarks) get the
settings' (``events_publish_url``, ``internal_token``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import httpx

from include.http import tls_context
from include.settings import get_settings

log = logging.getLogger(__name__)

# Quick attempts inside a small total budget, so a down API costs a task ~2 s at most.
PUBLISH_ATTEMPTS = 3
PUBLISH_TIMEOUT_SECONDS = 0.5
PUBLISH_BUDGET_SECONDS = 2.0


@dataclass(frozen=True)
class Post:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class EventsEndpoint:
    """The API's base URL for internal calls and the shared token they carry."""

    url: str
    token: str

    def __repr__(self) -> str:  # never the token in a log line or a traceback
        return f"EventsEndpoint(url={self.url!r}, token='***')"

    @classmethod
    def from_settings(cls) -> EventsEndpoint:
        settings = get_settings()
        return cls(settings.resolved_events_publish_url, settings.resolved_internal_token)


# What the core asks for (a request to send, or seconds to pause) and what it is told back.
Step = Post | float
Outcome = httpx.Response | httpx.HTTPError | None


def _attempts(
    generation_id: str, type: str, data: dict[str, Any] | None, key: str | None, endpoint: EventsEndpoint | None
) -> Generator[Step, Outcome, bool]:
    """The publishing policy; returns True when the API stored the event."""
    deadline = time.monotonic() + PUBLISH_BUDGET_SECONDS
    endpoint = endpoint or EventsEndpoint.from_settings()
    post = Post(
        url=f"{endpoint.url.rstrip('/')}/internal/generations/{generation_id}/events",
        headers={"Authorization": f"Bearer {endpoint.token}"},
        body={"type": type, "data": data or {}, "key": key},
    )
    for attempt in range(PUBLISH_ATTEMPTS):
        outcome = yield post
        if isinstance(outcome, httpx.Response):
            if outcome.status_code < 300:
                return True
            if outcome.status_code < 500:  # refused: retrying cannot help
                log.warning("event %s of %s refused: %s %s", type, generation_id, outcome.status_code, outcome.text[:200])
                return False
            log.info("event %s of %s: attempt %d answered %s", type, generation_id, attempt + 1, outcome.status_code)
        else:
            log.info("event %s of %s: attempt %d failed: %s", type, generation_id, attempt + 1, outcome)
        pause = 0.1 * 2**attempt
        if time.monotonic() + pause >= deadline:
            break
        yield pause
    log.warning("event %s of %s not published", type, generation_id)
    return False


class _Run:
    """One publication: drives :func:`_attempts` and keeps its result. Never raises: an error in
    the policy itself (bad settings) ends it unpublished."""

    def __init__(
        self, generation_id: str, type: str, data: dict[str, Any] | None, key: str | None, endpoint: EventsEndpoint | None
    ) -> None:
        self.what = f"event {type} of {generation_id}"
        self.result = False
        self.done = False
        self._core = _attempts(generation_id, type, data, key, endpoint)
        self.advance(None, first=True)

    def advance(self, outcome: Outcome, first: bool = False) -> None:
        try:
            self.step = next(self._core) if first else self._core.send(outcome)
        except StopIteration as finished:
            self.result, self.done = finished.value, True
        except Exception:  # noqa: BLE001 - progress must never fail the pipeline
            log.exception("could not publish %s", self.what)
            self.done = True


def _failed_send(exc: Exception) -> httpx.HTTPError:
    # Anything the client raises while sending is one failed attempt (the policy decides on retrying).
    return exc if isinstance(exc, httpx.HTTPError) else httpx.TransportError(f"{type(exc).__name__}: {exc}")


def publish(
    generation_id: str, type: str, data: dict[str, Any] | None = None, key: str | None = None, endpoint: EventsEndpoint | None = None
) -> bool:
    """Post an event to the API (``endpoint``, else the settings'); True when stored. Never raises, gives up within ~2 s."""
    run = _Run(generation_id, type, data, key, endpoint)
    http = _client()
    while not run.done:
        run.advance(_post(http, run.step) if isinstance(run.step, Post) else time.sleep(run.step))
    return run.result


_clients: dict[int, httpx.Client] = {}
_clients_lock = threading.Lock()


def _client() -> httpx.Client:
    """This process's client for :func:`publish`. Keyed by the process id: a forked child opens
    its own instead of sharing its parent's connections."""
    pid = os.getpid()
    with _clients_lock:
        if pid not in _clients:
            _clients.clear()  # a parent's, inherited through fork: never used here
            _clients[pid] = httpx.Client(timeout=PUBLISH_TIMEOUT_SECONDS, verify=tls_context())
        return _clients[pid]


def close_client() -> None:
    """Close this process's client (the next :func:`publish` opens a new one)."""
    with _clients_lock:
        client = _clients.pop(os.getpid(), None)
    if client is not None:
        client.close()


def _post(http: httpx.Client, post: Post) -> Outcome:
    try:
        return http.post(post.url, json=post.body, headers=post.headers)
    except Exception as exc:  # noqa: BLE001 - see _failed_send
        return _failed_send(exc)


async def apublish(
    generation_id: str, type: str, data: dict[str, Any] | None = None, key: str | None = None, endpoint: EventsEndpoint | None = None
) -> bool:
    """:func:`publish` for async code (the triggerer): the same policy, awaited."""
    run = _Run(generation_id, type, data, key, endpoint)
    async with httpx.AsyncClient(timeout=PUBLISH_TIMEOUT_SECONDS, verify=tls_context()) as http:
        while not run.done:
            run.advance(await _apost(http, run.step) if isinstance(run.step, Post) else await asyncio.sleep(run.step))
    return run.result


async def _apost(http: httpx.AsyncClient, post: Post) -> Outcome:
    try:
        return await http.post(post.url, json=post.body, headers=post.headers)
    except Exception as exc:  # noqa: BLE001 - see _failed_send
        return _failed_send(exc)
