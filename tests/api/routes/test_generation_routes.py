"""``/api/generations``: upload validation, balance, idempotency, ownership, triggering."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.main import app
from api.triggering import trigger_pending
from include import generations, ledger, storage
from include.airflow_client import AirflowClient
from include.db import session_scope
from include.models import Generation, LedgerEntry
from include.settlement import settle_failed_generation
from include.settings import get_settings
from tests.api import images
from tests.api.support import auth, make_user


def submit(client, api_key, photo=None, prompt="a happy pirate", filename="me.jpg", headers=None):
    return client.post(
        "/api/generations",
        headers={**auth(api_key), **(headers or {})},
        files={"image": (filename, images.jpeg() if photo is None else photo, "image/jpeg")},
        data={"prompt": prompt},
    )


def all_generations() -> list[Generation]:
    with session_scope() as session:
        return list(session.exec(select(Generation)).all())


def stored_uploads(var_dir) -> list:
    root = var_dir / "storage" / "uploads"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_submit_stores_photo_inserts_queued_generation_and_triggers(client, user_with_tokens, fake_airflow, fresh_app_db):
    user, key = user_with_tokens
    response = submit(client, key)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["prompt"] == "a happy pirate"
    assert body["share_url"].endswith("/b/" + generations.get(body["id"]).slug)
    generation = generations.get(body["id"])
    assert generation.upload_path == f"uploads/{body['id']}/photo.jpg" and storage.exists(generation.upload_path)
    assert generation.triggered_at is not None
    run = fake_airflow.runs[("bitbuddies_generate", body["id"])]
    assert run["conf"] == {
        "generation_id": body["id"],
        "user_id": user.id,
        "prompt": "a happy pirate",
        "motion": None,
        "upload_path": generation.upload_path,
    }
    # The token is taken with the generation (attempt 1); the DAG's charge task finds that charge.
    assert ledger.balance(user.id) == 2
    assert ledger.charge_generation(body["id"]).idempotency_key == ledger.charge_key(body["id"], 1)
    assert ledger.balance(user.id) == 2


def test_png_is_stored_with_its_own_extension(client, user_with_tokens):
    _, key = user_with_tokens
    body = submit(client, key, photo=images.png(), filename="me.png").json()
    assert generations.get(body["id"]).upload_path.endswith("/photo.png")


@pytest.mark.parametrize(
    ("photo", "prompt", "status", "message"),
    [
        (b"this is not an image at all", "a pirate", 415, "not a photo"),
        (images.truncated_jpeg(), "a pirate", 422, "truncated or corrupt"),
        (images.png_bomb(6300, 6300), "a pirate", 422, "too many pixels"),  # 39.7 MP: over our limit (25 MP)
        (images.png_bomb(30000, 30000), "a pirate", 422, "too many pixels"),  # past Pillow's own bomb limit
        (images.jpeg(64, 300), "a pirate", 422, "too small"),
        (b"", "a pirate", 422, "empty"),
        (None, "", 422, "prompt is empty"),
        (None, "   ", 422, "prompt is empty"),
        (None, "x" * 501, 422, "too long"),
    ],
)
def test_invalid_uploads_are_refused_before_anything_is_stored_or_charged(
    client, user_with_tokens, fake_airflow, fresh_app_db, photo, prompt, status, message
):
    user, key = user_with_tokens
    response = submit(client, key, photo=photo, prompt=prompt)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert all_generations() == [] and stored_uploads(fresh_app_db) == []
    assert ledger.balance(user.id) == 3 and fake_airflow.trigger_attempts == []


def test_too_big_upload_is_413(client, user_with_tokens, fresh_app_db, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_MAX_UPLOAD_BYTES", "20000")
    get_settings.cache_clear()
    _, key = user_with_tokens
    response = submit(client, key, photo=images.jpeg(2000, 2000) + b"\0" * 30000)
    assert response.status_code == 413 and response.json()["detail"] == "The photo is too big: the limit is 19.5312 KiB."
    assert all_generations() == [] and stored_uploads(fresh_app_db) == []


def test_missing_image_field_is_a_readable_422(client, user_with_tokens):
    _, key = user_with_tokens
    response = client.post("/api/generations", headers=auth(key), data={"prompt": "hi"})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str) and "image" in response.json()["detail"]


def test_zero_balance_is_402_and_nothing_is_stored(client, fresh_app_db, fake_airflow):
    _, key = make_user("broke@example.com", tokens=0)
    response = submit(client, key)
    assert response.status_code == 402 and "No tokens left" in response.json()["detail"]
    assert all_generations() == [] and stored_uploads(fresh_app_db) == [] and fake_airflow.runs == {}


def test_same_idempotency_key_gives_the_same_generation(client, user_with_tokens, fake_airflow, fresh_app_db):
    _, key = user_with_tokens
    first = submit(client, key, headers={"Idempotency-Key": "abc-1"})
    second = submit(client, key, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert len(all_generations()) == 1 and len(stored_uploads(fresh_app_db)) == 1
    assert fake_airflow.trigger_attempts == [first.json()["id"]]
    assert submit(client, key, headers={"Idempotency-Key": "abc-2"}).json()["id"] != first.json()["id"]


def test_idempotency_keys_are_per_user(client, user_with_tokens):
    _, key = user_with_tokens
    _, other_key = make_user("bob@example.com", tokens=1)
    mine = submit(client, key, headers={"Idempotency-Key": "same"}).json()["id"]
    theirs = submit(client, other_key, headers={"Idempotency-Key": "same"}).json()["id"]
    assert mine != theirs


def test_auth_is_required(client, user_with_tokens):
    assert client.get("/api/generations").status_code == 401
    response = client.get("/api/me", headers=auth("bb_wrong"))
    assert response.status_code == 401 and response.json()["detail"] == "Invalid API key."


def test_other_users_generations_are_not_found(client, user_with_tokens):
    _, key = user_with_tokens
    _, other_key = make_user("eve@example.com", tokens=1)
    gid = submit(client, key).json()["id"]
    assert client.get(f"/api/generations/{gid}", headers=auth(other_key)).status_code == 404
    assert client.get(f"/api/generations/{gid}/assets/buddy.webm", headers=auth(other_key)).status_code == 404
    assert client.get("/api/generations", headers=auth(other_key)).json()["data"] == []
    assert client.get(f"/api/generations/{gid}", headers=auth(key)).status_code == 200


def test_list_is_newest_first(client, user_with_tokens):
    _, key = user_with_tokens
    ids = [submit(client, key, prompt=f"buddy {i}").json()["id"] for i in range(3)]
    listed = client.get("/api/generations", headers=auth(key)).json()
    assert [g["id"] for g in listed["data"]] == ids[::-1] and listed["count"] == 3


def test_finished_generation_reports_assets_and_failure_reports_refund(client, user_with_tokens, fresh_app_db):
    _, key = user_with_tokens
    done_id = submit(client, key).json()["id"]
    failed_id = submit(client, key).json()["id"]
    generations.mark_succeeded(done_id, {kind: generations.asset_key(done_id, kind) for kind in generations.ASSET_FILES})
    ledger.charge_generation(failed_id)
    ledger.refund_generation(failed_id)
    generations.mark_failed(failed_id, "We could not find a person in your photo.", "analyze")

    done = client.get(f"/api/generations/{done_id}", headers=auth(key)).json()
    share = done["share_url"]
    assert done["status"] == "succeeded" and done["finished_at"]
    # Versioned public URLs (cacheable for good), the walk loop's among them when there is one.
    assert {kind: url.split("?v=")[0] for kind, url in done["assets"].items()} == {
        "webm": f"{share}/buddy.webm",
        "webp": f"{share}/buddy.webp",
        "gif": f"{share}/buddy.gif",
        "poster": f"{share}/poster.png",
        "walk_webm": f"{share}/walk.webm",
        "walk_webp": f"{share}/walk.webp",
    }
    assert all(len(url.split("?v=")[1]) == 12 for url in done["assets"].values())
    assert share.startswith(get_settings().public_base_url + "/b/")
    failed = client.get(f"/api/generations/{failed_id}", headers=auth(key)).json()
    assert failed["status"] == "failed" and failed["refund_state"] == "refunded"
    assert failed["error"] == "We could not find a person in your photo."
    assert set(failed["assets"].values()) == {None}


def test_a_generation_says_which_formats_are_ready_and_which_follow(client, user_with_tokens):
    _, key = user_with_tokens
    gid = submit(client, key).json()["id"]
    keys = {kind: generations.asset_key(gid, kind) for kind in generations.ASSET_FILES}
    first = {kind: keys[kind] for kind in ("webm", "poster")}
    generations.mark_succeeded(gid, first, pending=["webp", "gif", "walk_webm", "walk_webp"])

    done = client.get(f"/api/generations/{gid}", headers=auth(key)).json()
    assert done["status"] == "succeeded"
    assert (done["formats_ready"], done["formats_pending"]) == (["webm", "poster"], ["webp", "gif", "walk_webm", "walk_webp"])
    assert {kind for kind, url in done["assets"].items() if url} == {"webm", "poster"}
    assert client.get(f"/api/generations/{gid}/assets/buddy.gif", headers=auth(key)).status_code == 404

    generations.add_assets(gid, {kind: keys[kind] for kind in ("webp", "gif")})
    done = client.get(f"/api/generations/{gid}", headers=auth(key)).json()
    assert (done["formats_ready"], done["formats_pending"]) == (["webm", "webp", "gif", "poster"], ["walk_webm", "walk_webp"])
    # The walk loop failed for good: it is no longer announced; the rest stays published.
    generations.drop_pending_assets(gid)
    done = client.get(f"/api/generations/{gid}", headers=auth(key)).json()
    assert (done["formats_ready"], done["formats_pending"]) == (["webm", "webp", "gif", "poster"], [])


def test_formats_encoded_before_publishing_are_kept_as_ready_and_a_failed_generation_takes_none(client, user_with_tokens):
    _, key = user_with_tokens
    gid, failed = (submit(client, key).json()["id"] for _ in range(2))
    keys = {kind: generations.asset_key(gid, kind) for kind in generations.ASSET_FILES}
    # The fallbacks finished first (they run beside transcode): nothing shows before publishing...
    generations.add_assets(gid, {kind: keys[kind] for kind in ("webp", "gif")})
    running = client.get(f"/api/generations/{gid}", headers=auth(key)).json()
    assert running["status"] != "succeeded" and running["formats_ready"] == [] and not any(running["assets"].values())
    # ...and publishing keeps them as ready instead of announcing them again.
    generations.mark_succeeded(gid, {kind: keys[kind] for kind in ("webm", "poster")}, pending=["webp", "gif", "walk_webm", "walk_webp"])
    done = client.get(f"/api/generations/{gid}", headers=auth(key)).json()
    assert (done["formats_ready"], done["formats_pending"]) == (["webm", "webp", "gif", "poster"], ["walk_webm", "walk_webp"])
    settle_failed_generation(failed)
    generations.add_assets(failed, {"gif": generations.asset_key(failed, "gif")})
    assert generations.get(failed).assets == {}


def test_owner_downloads_an_asset(client, user_with_tokens):
    _, key = user_with_tokens
    gid = submit(client, key).json()["id"]
    assert client.get(f"/api/generations/{gid}/assets/buddy.webm", headers=auth(key)).status_code == 404  # not yet
    webm_key = generations.asset_key(gid, "webm")
    with storage.open_write(webm_key) as out:
        out.write(b"\x1aE\xdf\xa3webm-bytes")
    generations.mark_succeeded(gid, {"webm": webm_key})
    response = client.get(f"/api/generations/{gid}/assets/buddy.webm", headers=auth(key))
    assert response.status_code == 200 and response.content == b"\x1aE\xdf\xa3webm-bytes"
    assert response.headers["content-type"] == "video/webm"
    assert client.get(f"/api/generations/{gid}/assets/secrets.txt", headers=auth(key)).status_code == 404


def test_airflow_down_at_submit_still_accepts_and_the_loop_triggers_once_later(fresh_app_db, fake_airflow):
    from api.deps import get_airflow_client

    _, key = make_user(tokens=2)
    down = AirflowClient(base_url="http://127.0.0.1:9", timeout=1)  # discard port: nobody listens
    app.dependency_overrides[get_airflow_client] = lambda: down
    try:
        response = submit(TestClient(app), key)
    finally:
        app.dependency_overrides.clear()
    assert response.status_code == 202
    gid = response.json()["id"]
    assert generations.get(gid).triggered_at is None
    assert trigger_pending(down) == 0  # still down: stays pending

    with AirflowClient(base_url=fake_airflow.url, username="admin", password="admin", timeout=5) as back:
        assert trigger_pending(back) == 1
        assert trigger_pending(back) == 0
    assert fake_airflow.trigger_attempts == [gid]
    assert generations.get(gid).triggered_at is not None


def test_lifespan_loop_triggers_pending_generations(fresh_app_db, fake_airflow, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_URL", fake_airflow.url)
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_USERNAME", "admin")  # the fake's user; settings have no default password
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_PASSWORD", "admin")
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_TRIGGER_INTERVAL_SECONDS", "0.05")
    get_settings.cache_clear()
    user, _ = make_user(tokens=1)
    with session_scope() as session:
        pending = Generation(user_id=user.id, prompt="hi", upload_path="uploads/x/photo.jpg")
        session.add(pending)
    with TestClient(app):
        deadline = time.monotonic() + 10
        while generations.get(pending.id).triggered_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert generations.get(pending.id).triggered_at is not None
    assert fake_airflow.trigger_attempts == [pending.id]


def concurrently(count: int, fn) -> list:
    """``count`` calls of ``fn`` released at the same moment (threads); returns their results."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(count)

    def call(_):
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def test_twenty_concurrent_submissions_with_one_idempotency_key_make_one_generation_and_one_charge(
    client, user_with_tokens, fake_airflow, fresh_app_db, generous_limits
):
    user, key = user_with_tokens
    responses = concurrently(20, lambda: submit(client, key, headers={"Idempotency-Key": "same-photo"}))
    assert {r.status_code for r in responses} == {202}, [r.text for r in responses if r.status_code != 202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(all_generations()) == 1 and len(stored_uploads(fresh_app_db)) == 1
    with session_scope() as session:
        charges = session.exec(select(LedgerEntry).where(LedgerEntry.reason == "charge")).all()
    assert len(charges) == 1 and ledger.balance(user.id) == 2


def test_concurrent_submissions_cannot_overdraw_the_balance(client, fake_airflow, fresh_app_db, generous_limits):
    user, key = make_user("last-token@example.com", tokens=2)
    responses = concurrently(8, lambda: submit(client, key))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202, 202] + [402] * 6, codes
    refused = next(r for r in responses if r.status_code == 402)
    assert "No tokens left" in refused.json()["detail"] and "balance is 0" in refused.json()["detail"]
    assert len(all_generations()) == 2 and len(stored_uploads(fresh_app_db)) == 2
    assert ledger.balance(user.id) == 0
