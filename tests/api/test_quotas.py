"""Per-user limits through the API: 429 with Retry-After and a clear message, per user."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn

from api.main import app
from include import ledger
from include.models import Generation
from include.settings import get_settings
from tests.api import images
from tests.api.routes.test_sticker_orders import ADDRESS, finished_generation
from tests.api.support import auth, make_user


def upload(client, key, photo=None):
    files = {"image": ("me.jpg", photo if photo is not None else images.jpeg(), "image/jpeg")}
    return client.post("/api/generations", headers=auth(key), files=files, data={"prompt": "hi"})


def test_uploads_per_minute_count_rejected_ones_and_are_per_user(client, fresh_app_db, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_LIMIT_UPLOADS_PER_MINUTE", "3")
    get_settings.cache_clear()
    _, ada = make_user("ada@example.com", tokens=5)
    _, bob = make_user("bob@example.com", tokens=5)
    assert [upload(client, ada, b"not a photo").status_code for _ in range(2)] == [415, 415]
    assert upload(client, ada).status_code == 202
    over = upload(client, ada)
    assert over.status_code == 429 and over.json() == {"detail": "Too many uploads: at most 3 a minute."}
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert upload(client, bob).status_code == 202  # another user's count


def test_generations_in_flight(client, fresh_app_db, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_LIMIT_GENERATIONS_IN_FLIGHT", "2")
    get_settings.cache_clear()
    user, key = make_user(tokens=5)
    assert [upload(client, key).status_code for _ in range(2)] == [202, 202]
    over = upload(client, key)
    assert over.status_code == 429 and "at most 2 at once" in over.json()["detail"] and over.headers["retry-after"]
    first = client.get("/api/generations", headers=auth(key)).json()["data"][0]["id"]
    ledger.refund_generation(first)
    from include import generations

    generations.mark_failed(first, "boom")
    assert upload(client, key).status_code == 202  # one finished: room again


def test_sticker_orders_per_day(client, fresh_app_db, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_LIMIT_STICKER_ORDERS_PER_DAY", "1")
    monkeypatch.setenv("BITBUDDIES_ORDERS_DEV_AUTOPAY", "true")
    get_settings.cache_clear()
    user, key = make_user()
    gid = finished_generation(user.id)
    body = {"generation_ids": [gid], "sheet_size": "A4", "copies": 1, "shipping_address": ADDRESS}
    assert client.post("/api/sticker-orders", json=body, headers=auth(key)).status_code == 201
    over = client.post("/api/sticker-orders", json=body, headers=auth(key))
    assert over.status_code == 429 and over.json() == {"detail": "Too many sticker orders: at most 1 a day."}
    assert int(over.headers["retry-after"]) > 3600


@pytest.fixture
def server(fresh_app_db):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(15)


def test_the_21st_concurrent_stream_of_a_user_gets_429(server, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_URL", "http://127.0.0.1:9")  # the lifespan's trigger loop finds no Airflow
    user, key = make_user(tokens=1)
    gid = ledger.create_paid_generation(Generation(user_id=user.id, prompt="p", upload_path="x")).id  # stays running
    limit = get_settings().limit_event_streams
    assert limit == 20
    url = f"{server}/api/generations/{gid}/events"
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=50)) as http:
        streams = []
        try:
            for _ in range(limit):
                stream = http.stream("GET", url, headers=auth(key))
                response = stream.__enter__()
                streams.append(stream)
                assert response.status_code == 200
            refused = http.get(url, headers=auth(key))
            assert refused.status_code == 429, refused.text
            assert refused.json() == {"detail": f"Too many open progress streams: at most {limit} at once."}
            assert refused.headers["retry-after"]
            streams.pop().__exit__(None, None, None)  # a client leaves: its slot comes back
            deadline = time.monotonic() + 10
            while True:
                with http.stream("GET", url, headers=auth(key)) as again:
                    if again.status_code == 200 or time.monotonic() > deadline:
                        break
                time.sleep(0.1)
            assert again.status_code == 200
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
