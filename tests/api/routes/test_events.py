"""GET /api/generations/{id}/events (SSE) and the internal publish endpoint."""

from __future__ import annotations

import pytest

from include import events
from include.db import session_scope
from include.generations import mark_failed, mark_succeeded
from include.models import Generation
from include.settings import get_settings
from tests.api.support import auth, make_user


@pytest.fixture
def owner(fresh_app_db):
    return make_user("owner@example.com", tokens=1)


@pytest.fixture
def generation(owner):
    user, _ = owner
    with session_scope() as session:
        gen = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(gen)
    return gen.id


def internal() -> dict[str, str]:
    return {"Authorization": f"Bearer {get_settings().resolved_internal_token}"}


def read_stream(client, gid, key, last_event_id=None):
    headers = auth(key) | ({"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {})
    with client.stream("GET", f"/api/generations/{gid}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(events.parse_sse(response.iter_lines()))


def publish_stages(client, gid, stages):
    for stage in stages:
        for kind in ("stage_started", "stage_finished"):
            body = {"type": kind, "data": {"stage": stage, "duration_seconds": 1.0}, "key": f"{kind}:{stage}:1"}
            assert client.post(f"/internal/generations/{gid}/events", json=body, headers=internal()).status_code == 201


def test_late_client_gets_the_whole_history(client, owner, generation):
    publish_stages(client, generation, ["charge", "moderate", "analyze"])
    mark_succeeded(generation, {})
    received = read_stream(client, generation, owner[1])
    assert [e.id for e in received] == [str(n) for n in range(1, 8)]
    assert [e.event for e in received][-1] == "succeeded"
    assert received[0].json()["stage"] == "charge" and "percent" in received[0].json()


def test_reconnect_with_last_event_id_gets_exactly_what_it_missed(client, owner, generation):
    publish_stages(client, generation, ["charge", "moderate"])
    mark_failed(generation, "The moderate step failed: boom", "moderate")
    everything = read_stream(client, generation, owner[1])
    missed = read_stream(client, generation, owner[1], last_event_id=2)
    assert [e.id for e in missed] == [e.id for e in everything[2:]] == ["3", "4", "5"]
    assert missed[-1].event == "failed" and missed[-1].json()["error"] == "The moderate step failed: boom"
    # Reconnecting after the end: nothing more, the stream closes at once.
    assert read_stream(client, generation, owner[1], last_event_id=5) == []


def test_only_the_owner_may_subscribe(client, generation):
    _, stranger = make_user("stranger@example.com")
    assert client.get(f"/api/generations/{generation}/events", headers=auth(stranger)).status_code == 404
    assert client.get(f"/api/generations/{generation}/events").status_code == 401


def test_bad_last_event_id_is_a_400(client, owner, generation):
    response = client.get(f"/api/generations/{generation}/events", headers=auth(owner[1]) | {"Last-Event-ID": "abc"})
    assert response.status_code == 400


def test_internal_endpoint_needs_the_token_and_deduplicates(client, generation):
    body = {"type": "retry", "data": {"error": "timeout"}, "key": "retry:animate:1"}
    url = f"/internal/generations/{generation}/events"
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    first = client.post(url, json=body, headers=internal()).json()
    second = client.post(url, json=body, headers=internal()).json()
    assert first["seq"] == second["seq"] == 1
    assert client.post(url, json={"type": "nope"}, headers=internal()).status_code == 422
    assert client.post("/internal/generations/" + "0" * 32 + "/events", json=body, headers=internal()).status_code == 404
