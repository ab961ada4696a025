"""ModelJobTrigger: serializable, read-only polling, one case per terminal outcome."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bitbuddies_airflow import hooks
from bitbuddies_airflow.triggers import ModelJobTrigger
from include import event_publisher
from include.model_queue import AsyncQueueClient
from tests.plugins.fake_queue import BASE, FakeQueue, FakeJob


@pytest.fixture
def queue(monkeypatch):
    q = FakeQueue()

    async def aget_client(cls, conn_id):
        return AsyncQueueClient(transport=q.async_transport())

    monkeypatch.setattr(hooks.ModelProviderHook, "aget_client", classmethod(aget_client))
    return q


def first_event(trigger):
    async def run():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(run())


def status_url(q, **job):
    q.jobs["r1"] = FakeJob("bitbuddies/animate", {}, **job)
    return f"{BASE}/bitbuddies/animate/requests/r1/status"


def test_serialize_round_trip():
    trigger = ModelJobTrigger("http://x/status", "conn", 123.0, 0.5)
    path, kwargs = trigger.serialize()
    assert path == "bitbuddies_airflow.triggers.ModelJobTrigger"
    assert ModelJobTrigger(**kwargs).serialize() == (path, kwargs)
    with_progress = ModelJobTrigger("http://x/status", "conn", 123.0, 0.5, generation_id="g" * 32, stage="animate")
    path, kwargs = with_progress.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs  # stored as JSON in the metadata DB
    assert ModelJobTrigger(**kwargs).serialize() == (path, kwargs)


@pytest.fixture
def published(monkeypatch):
    """Every queue_position publish; each one hangs, as a stuck API would."""
    calls = []

    monkeypatch.setenv(
        "AIRFLOW_CONN_BITBUDDIES_API", json.dumps({"conn_type": "http", "host": "api.internal", "password": "internal-token"})
    )

    async def hanging_apublish(generation_id, type, data=None, key=None, endpoint=None):
        assert endpoint.url == "http://api.internal" and endpoint.token == "internal-token"
        calls.append((generation_id, type, data, key))
        await asyncio.sleep(30)
        return True

    monkeypatch.setattr(event_publisher, "apublish", hanging_apublish)
    return calls


def test_queue_position_changes_are_published_without_delaying_the_polls(queue, published):
    url = status_url(queue, states=["IN_QUEUE", "IN_QUEUE", "IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"])
    trigger = ModelJobTrigger(url, "c", time.time() + 10, poll_interval=0.01, generation_id="gid1", stage="animate")
    started = time.monotonic()
    event = first_event(trigger)
    assert event["status"] == "completed" and time.monotonic() - started < 2
    # Once per change: queued at 0 (three polls), then running (position None).
    assert [(gid, kind, data) for gid, kind, data, _ in published] == [
        ("gid1", "queue_position", {"stage": "animate", "position": 0}),
        ("gid1", "queue_position", {"stage": "animate", "position": None}),
    ]
    keys = [key for *_, key in published]
    assert len(set(keys)) == 2 and all(key.startswith("queue_position:animate:") for key in keys)


def test_no_generation_no_queue_events(queue, published):
    url = status_url(queue)
    assert first_event(ModelJobTrigger(url, "c", time.time() + 10, poll_interval=0.01))["status"] == "completed"
    assert published == []


def test_completed_after_queue_and_progress(queue):
    url = status_url(queue)
    event = first_event(ModelJobTrigger(url, "c", time.time() + 10, poll_interval=0.01))
    assert event["status"] == "completed" and event["error"] is None
    # One poll, then one status stream that tells every change (running, then done).
    assert queue.jobs["r1"].polls == 3 and queue.jobs["r1"].streams == 1
    assert queue.submissions == []  # waiting never submits


def test_completion_is_heard_on_the_status_stream_without_waiting_a_poll_interval(queue):
    url = status_url(queue, states=["IN_QUEUE", "IN_QUEUE", "IN_PROGRESS", "COMPLETED"])
    started = time.monotonic()
    event = first_event(ModelJobTrigger(url, "c", time.time() + 120, poll_interval=60))
    assert event["status"] == "completed"
    assert time.monotonic() - started < 5  # a poll interval is 60 s
    assert queue.jobs["r1"].streams >= 1


@pytest.mark.parametrize("stream_status", [404, 405, 503])
def test_without_a_status_stream_the_job_is_polled(queue, stream_status):
    """A provider that refuses the stream (404/405: for good; 503: this time) is polled instead."""
    queue.stream_status = stream_status
    url = status_url(queue, states=["IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"])
    event = first_event(ModelJobTrigger(url, "c", time.time() + 10, poll_interval=0.01))
    assert event["status"] == "completed" and queue.jobs["r1"].polls == 4
    assert queue.jobs["r1"].streams == 0


def test_failed_job_is_reported_with_its_error(queue):
    url = status_url(queue, states=["COMPLETED"], error="boom", error_type="internal")
    event = first_event(ModelJobTrigger(url, "c", time.time() + 10, poll_interval=0.01))
    assert event == {"status": "completed", "error": "boom", "error_type": "internal", "inference_time": None}


def test_transient_errors_are_ridden_out(queue):
    url = status_url(queue, states=["COMPLETED"])
    queue.transient_failures = 3
    event = first_event(ModelJobTrigger(url, "c", time.time() + 20, poll_interval=0.01))
    assert event["status"] == "completed"


def test_deadline_gives_a_timeout_event(queue):
    url = status_url(queue, states=["IN_PROGRESS"])
    event = first_event(ModelJobTrigger(url, "c", time.time() + 0.2, poll_interval=0.05))
    assert event["status"] == "timeout"


def test_a_permanent_refusal_ends_the_wait_at_once(queue):
    url = f"{BASE}/bitbuddies/animate/requests/unknown/status"
    started = time.time()
    event = first_event(ModelJobTrigger(url, "c", time.time() + 30, poll_interval=0.01))
    assert event["status"] == "error" and "404" in event["error"]
    assert time.time() - started < 5


def test_backoff_grows_exponentially_and_is_capped():
    from include.model_queue import backoff_delay

    delays = [backoff_delay(n, 0.5, 30.0) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1.0
    assert 2.0 <= delays[2] <= 4.0
    assert all(d <= 30.0 for d in delays) and delays[-1] >= 15.0
