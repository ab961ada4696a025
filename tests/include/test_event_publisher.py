"""include/event_publisher.py: one retry policy for the sync and the async publisher, never raising."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from include import event_publisher
from tests.api.support import fresh_app_db  # noqa: F401  (fixture)
from tests.include.test_events import generation  # noqa: F401  (fixture)


def test_publish_never_raises_and_gives_up_quickly(monkeypatch, generation):
    import time

    monkeypatch.setenv("BITBUDDIES_EVENTS_PUBLISH_URL", "http://127.0.0.1:9")  # nothing listens there
    from include.settings import get_settings

    get_settings.cache_clear()
    started = time.monotonic()
    assert event_publisher.publish(generation, "retry", {"error": "x"}) is False
    assert asyncio.run(event_publisher.apublish(generation, "retry", {"error": "x"})) is False
    assert time.monotonic() - started < 2 * event_publisher.PUBLISH_BUDGET_SECONDS + 1


class ScriptedAPI:
    """The internal events endpoint answering a fixed sequence of status codes (or connection errors)."""

    def __init__(self, answers: list[int | None]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(answer, json={})


@pytest.fixture
def scripted(monkeypatch):
    """Both publishers talk to the same scripted endpoint and pause for no time."""
    real_client, real_async = httpx.Client, httpx.AsyncClient

    def install(answers):
        api = ScriptedAPI(answers)
        transport = httpx.MockTransport(api)
        monkeypatch.setattr(event_publisher.httpx, "Client", lambda **kw: real_client(transport=transport, **kw))
        monkeypatch.setattr(event_publisher.httpx, "AsyncClient", lambda **kw: real_async(transport=transport, **kw))
        monkeypatch.setattr(event_publisher.time, "sleep", lambda seconds: None)
        event_publisher.close_client()  # the next publish opens a client on the scripted endpoint
        return api

    yield install
    event_publisher.close_client()


CASES = [
    ([201], True, 1),  # stored at once
    ([None, 503, 201], True, 3),  # down, then overloaded, then stored
    ([404], False, 1),  # refused: retrying cannot help
    ([None, None, None], False, 3),  # never reachable: gives up after the attempts
]


@pytest.mark.parametrize(("answers", "stored", "attempts"), CASES)
def test_sync_and_async_publishers_follow_the_same_policy(scripted, answers, stored, attempts):
    sync_api = scripted(answers)
    assert event_publisher.publish("g" * 32, "retry", {"error": "x"}, key="k") is stored
    async_api = scripted(answers)
    assert asyncio.run(event_publisher.apublish("g" * 32, "retry", {"error": "x"}, key="k")) is stored
    assert len(sync_api.requests) == len(async_api.requests) == attempts
    sent = [r.read() for r in sync_api.requests + async_api.requests]
    assert len(set(sent)) == 1 and b'"key":"k"' in sent[0]
    assert sync_api.requests[0].headers["authorization"].startswith("Bearer ")


def test_one_blocking_client_per_process_and_never_a_parent_s(monkeypatch):
    event_publisher.close_client()
    first = event_publisher._client()
    assert event_publisher._client() is first  # the second event reuses the connection
    monkeypatch.setattr(event_publisher.os, "getpid", lambda: -1)  # as in a forked child
    child = event_publisher._client()
    assert child is not first
    assert not first.is_closed  # the parent's stays the parent's: the child neither uses nor closes it
    event_publisher.close_client()
    assert child.is_closed
