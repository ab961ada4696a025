"""GET /api/generations/{id}/events (SSE) and the internal publish endpoint."""

from __future__ import annotations

import os
import sys
import threading
import time

import httpx
import pytest

from api.sse import parse_sse
from include.db import reset_engine
from include.migrations import migrate
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
        return list(parse_sse(response.iter_lines()))


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


# --- two API processes on one Postgres app DB ----------------------------------------------


def _postgres_admin():
    import psycopg2

    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Postgres at 127.0.0.1:5432 is required under CI: {exc}")
        pytest.skip(f"needs Postgres at 127.0.0.1:5432 for the production fan-out (LISTEN/NOTIFY): {exc}")
    conn.autocommit = True
    return conn


@pytest.fixture
def postgres_app_db(tmp_path, monkeypatch):
    admin = _postgres_admin()
    name = f"bitbuddies_events_{os.getpid()}"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    for key, value in {"VAR_DIR": str(tmp_path), "DATABASE_URL": url, "EVENTS_BACKEND": "postgres"}.items():
        monkeypatch.setenv(f"BITBUDDIES_{key}", value)
    get_settings.cache_clear()
    reset_engine()
    migrate()
    yield url
    reset_engine()
    get_settings.cache_clear()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.mark.slow
def test_an_event_published_to_one_api_process_reaches_a_subscriber_of_another(postgres_app_db, tmp_path):
    from ops.stack import Stack, StackConfig
    from tests.e2e.conftest import free_port

    user, key = make_user("fanout@example.com")
    with session_scope() as session:
        gen = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(gen)
    ports = {"api-a": free_port(), "api-b": free_port()}
    cfg = StackConfig(
        var_dir=tmp_path,
        extra_env={
            "BITBUDDIES_DATABASE_URL": postgres_app_db,
            "BITBUDDIES_EVENTS_BACKEND": "postgres",
            # Long heartbeats: what arrives comes through NOTIFY, not through the idle catch-up.
            "BITBUDDIES_EVENTS_HEARTBEAT_SECONDS": "60",
            "BITBUDDIES_AIRFLOW_URL": f"http://127.0.0.1:{free_port()}",
        },
    )
    stack = Stack(cfg)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    for name, port in ports.items():
        stack.start_one(name, [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)])
    try:
        deadline = time.time() + 60
        for port in ports.values():
            while True:
                stack.check_alive()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.time() < deadline, "API processes did not start"
                time.sleep(0.2)
        a, b = (f"http://127.0.0.1:{port}" for port in ports.values())
        received, connected = [], threading.Event()

        def subscribe_to_b():
            with httpx.stream("GET", f"{b}/api/generations/{gen.id}/events", headers=auth(key), timeout=30) as response:
                connected.set()
                for event in parse_sse(response.iter_lines()):
                    received.append((event, time.monotonic()))

        subscriber = threading.Thread(target=subscribe_to_b)
        subscriber.start()
        assert connected.wait(10)
        time.sleep(0.3)  # the stream has read its (empty) history and waits live
        sent_at = time.monotonic()
        body = {"type": "stage_started", "data": {"stage": "charge"}, "key": "stage_started:charge_token:1"}
        assert httpx.post(f"{a}/internal/generations/{gen.id}/events", json=body, headers=internal()).status_code == 201
        terminal = {"type": "succeeded", "data": {"status": "succeeded"}}
        assert httpx.post(f"{a}/internal/generations/{gen.id}/events", json=terminal, headers=internal()).status_code == 201
        subscriber.join(20)
        assert not subscriber.is_alive(), "the stream on B did not end after the terminal event"
        assert [(e.id, e.event) for e, _ in received] == [("1", "stage_started"), ("2", "succeeded")]
        assert received[0][1] - sent_at < 5  # through NOTIFY, long before B's 60 s idle catch-up
    finally:
        stack.stop()
