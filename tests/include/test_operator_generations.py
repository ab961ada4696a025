"""Generations an operator starts from the trigger form: stored once, paid once, by whom the form says."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import select

from include import audit, ledger, storage
from include import operator_generations as og
from include.db import session_scope
from include.models import Generation, LedgerEntry
from tests.api.images import jpeg, truncated_jpeg
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)

GID = og.generation_id_for_run("bitbuddies_generate", "manual__2026-12-01T00:00:00+00:00")


@pytest.fixture
def photo_file(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg(640, 480))
    return path


@pytest.fixture
def photo_server(tmp_path):
    """A real HTTP server serving tmp_path/served (photo.jpg, broken.jpg)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "photo.jpg").write_bytes(jpeg(512, 512))
    (served / "broken.jpg").write_bytes(truncated_jpeg())
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def request(source, **overrides) -> og.OperatorRequest:
    return og.OperatorRequest(**{"photo": str(source), "prompt": "a happy cat", "email": "ada@example.com", "motion": "wave"} | overrides)


def ledger_rows(gid: str) -> list[tuple[str, int, str]]:
    with session_scope() as session:
        rows = session.exec(select(LedgerEntry).where(LedgerEntry.generation_id == gid).order_by(LedgerEntry.id)).all()
    return [(e.reason, e.amount, e.idempotency_key) for e in rows]


def test_the_run_id_gives_a_stable_generation_id_like_the_apis():
    assert len(GID) == 32 and int(GID, 16) >= 0
    assert GID == og.generation_id_for_run("bitbuddies_generate", "manual__2026-12-01T00:00:00+00:00")
    assert GID != og.generation_id_for_run("bitbuddies_generate", "manual__2026-12-01T00:00:01+00:00")


def test_a_file_on_the_server_is_stored_clean_and_the_user_pays_one_token(fresh_app_db, photo_file):
    user, _ = make_user(tokens=2)
    generation = og.store(GID, request(photo_file, email=" Ada@Example.com "))
    assert (generation.user_id, generation.prompt, generation.motion, generation.status) == (user.id, "a happy cat", "wave", "queued")
    # Its run is the one storing it: the API's trigger loop must not start a second one.
    assert generation.triggered_at is not None
    with storage.open_read(generation.upload_path) as stored:
        assert stored.read()[:2] == b"\xff\xd8"
    assert ledger.balance(user.id) == 1
    assert ledger_rows(GID) == [("charge", -1, ledger.charge_key(GID, 1))]
    # The DAG's charge task finds that charge instead of taking another token.
    assert ledger.charge_generation(GID).idempotency_key == ledger.charge_key(GID, 1)
    assert ledger.balance(user.id) == 1
    assert audit.audit().ok


def test_the_stored_generation_knows_its_run_and_links_to_it(fresh_app_db, photo_file, monkeypatch):
    from include.generations import airflow_run_url
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_AIRFLOW_PUBLIC_URL", "https://airflow.example.com")
    get_settings.cache_clear()
    make_user(tokens=1)
    generation = og.store(GID, request(photo_file), run_id="manual__2026-12-01T06:00:00+00:00")
    assert generation.airflow_run_id == "manual__2026-12-01T06:00:00+00:00"
    assert airflow_run_url(generation) == "https://airflow.example.com/dags/bitbuddies_generate/runs/manual__2026-12-01T06%3A00%3A00%2B00%3A00"
    api_started = Generation(id="a" * 32, user_id=generation.user_id, prompt="p", upload_path="x")
    assert airflow_run_url(api_started).endswith(f"/runs/{'a' * 32}")


def test_a_retried_store_returns_the_stored_generation_and_charges_nothing_more(fresh_app_db, photo_file):
    user, _ = make_user(tokens=3)
    first = og.store(GID, request(photo_file))
    photo_file.unlink()  # a retry does not even need the photo any more
    again = og.store(GID, request(photo_file))
    assert again.id == first.id and again.upload_path == first.upload_path
    assert ledger.balance(user.id) == 2


def test_an_operator_grant_pays_and_the_ledger_says_so(fresh_app_db, photo_file):
    user, _ = make_user(tokens=0)
    og.store(GID, request(photo_file, payment="operator_grant"))
    assert ledger_rows(GID) == [("grant", 1, ledger.operator_grant_key(GID)), ("charge", -1, ledger.charge_key(GID, 1))]
    assert ledger.balance(user.id) == 0
    assert audit.audit().ok


def test_a_user_without_tokens_is_refused_and_nothing_is_stored(fresh_app_db, photo_file):
    make_user(tokens=0)
    with pytest.raises(og.OperatorRequestRefused, match="No tokens left.*operator grant"):
        og.store(GID, request(photo_file))
    with session_scope() as session:
        assert session.get(Generation, GID) is None
    assert not storage.exists(f"uploads/{GID}/photo.jpg")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "nobody@example.com"}, "No user has the email"),
        ({"email": ""}, "email of the user"),
        ({"prompt": "  "}, "prompt"),
        ({"motion": "moonwalk"}, "Unknown motion"),
        ({"payment": "free"}, "Unknown payment"),
        ({"photo": "photo.jpg"}, "absolute file path"),
        ({"photo": "/nonexistent/photo.jpg"}, "no file"),
    ],
)
def test_unusable_requests_are_refused_with_what_to_change(fresh_app_db, photo_file, overrides, message):
    make_user(tokens=1)
    with pytest.raises(og.OperatorRequestRefused, match=message):
        og.store(GID, request(photo_file, **overrides))
    assert ledger_rows(GID) == []


def test_a_photo_url_is_downloaded_and_validated(fresh_app_db, photo_server):
    user, _ = make_user(tokens=1)
    generation = og.store(GID, request(f"{photo_server}/photo.jpg", motion=None))
    assert generation.user_id == user.id and generation.motion is None
    other = og.generation_id_for_run("bitbuddies_generate", "manual__other")
    with pytest.raises(og.OperatorRequestRefused, match="truncated or corrupt"):
        og.store(other, request(f"{photo_server}/broken.jpg"))
    with pytest.raises(og.OperatorRequestRefused, match="HTTP 404"):
        og.store(other, request(f"{photo_server}/missing.jpg"))
    assert ledger.balance(user.id) == 0


def test_a_photo_over_the_size_limit_is_refused(fresh_app_db, photo_file, monkeypatch):
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_MAX_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    make_user(tokens=1)
    with pytest.raises(og.OperatorRequestRefused, match="too big"):
        og.store(GID, request(photo_file))
