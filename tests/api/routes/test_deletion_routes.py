"""``DELETE /api/generations/{id}``, ``DELETE /api/me`` and ``bitbuddies user delete``: what a user and
the public see afterwards."""

from __future__ import annotations

import pytest

from api.cli import main as cli
from include import generations, ledger, orders
from include.audit import audit
from include.models import Generation
from include.settings import get_settings
from tests.api.routes.test_share_routes import published_generation
from tests.api.support import auth, make_user


@pytest.fixture(autouse=True)
def no_model_server(monkeypatch, fresh_app_db):
    # Only the model server's copies stay behind (tests/include/test_deletion.py covers them).
    monkeypatch.setenv("BITBUDDIES_MODEL_PROVIDER", "fal")
    get_settings.cache_clear()


def owner_key(generation: Generation) -> str:
    from include import accounts

    return accounts.create_api_key(generation.user_id, "test").key


def test_deleting_a_buddy_makes_its_share_page_gone_and_its_files_404(client):
    generation = published_generation()
    key = owner_key(generation)
    slug = generation.slug
    assert client.get(f"/b/{slug}").status_code == 200

    response = client.delete(f"/api/generations/{generation.id}", headers=auth(key))
    assert response.status_code == 204, response.text

    page = client.get(f"/b/{slug}")
    assert page.status_code == 410 and "deleted" in page.text and "pirate" not in page.text
    for name in ("buddy.webm", "buddy.gif", "poster.png"):
        assert client.get(f"/b/{slug}/{name}").status_code == 404
    assert client.get(f"/api/generations/{generation.id}", headers=auth(key)).status_code == 404
    assert client.get(f"/api/generations/{generation.id}/events", headers=auth(key)).status_code == 404
    assert client.get(f"/g/{generation.id}").status_code == 404
    assert client.get("/api/generations", headers=auth(key)).json()["count"] == 0
    assert client.delete(f"/api/generations/{generation.id}", headers=auth(key)).status_code == 404


def test_someone_elses_or_an_unfinished_buddy(client):
    generation = published_generation()
    _, bob_key = make_user("bob@example.com", tokens=1)
    assert client.delete(f"/api/generations/{generation.id}", headers=auth(bob_key)).status_code == 404
    assert client.get(f"/b/{generation.slug}").status_code == 200
    bob = client.get("/api/me", headers=auth(bob_key)).json()
    running = ledger.create_paid_generation(Generation(user_id=bob["id"], prompt="p", upload_path="x"))
    refused = client.delete(f"/api/generations/{running.id}", headers=auth(bob_key))
    assert refused.status_code == 409 and refused.json() == {"detail": "This buddy is still being made; delete it once it has finished."}


def test_delete_me_revokes_the_key_and_keeps_the_ledger_auditable(client):
    user, key = make_user("cy@example.com", tokens=2)
    generation = ledger.create_paid_generation(Generation(user_id=user.id, prompt="p", upload_path="x"))
    generations.mark_succeeded(generation.id, {})
    assert audit().ok
    assert client.delete("/api/me", headers=auth(key)).status_code == 204
    assert client.get("/api/me", headers=auth(key)).status_code == 401
    assert client.get(f"/b/{generation.slug}").status_code == 410
    assert audit().ok


def test_an_order_in_flight_refuses_delete_me_with_a_clear_message(client):
    generation = published_generation()
    key = owner_key(generation)
    address = {"name": "Ada", "address1": "1 Main St", "city": "Springfield", "zip": "12345", "country_code": "US"}
    order = orders.create_order(generation.user_id, [generation.id], "A4", 1, address)
    orders.mark_paid(order.id, "dev_autopay", None)
    refused = client.delete("/api/me", headers=auth(key))
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"Sticker order {order.id[:8].upper()} is still paid")
    assert client.get("/api/me", headers=auth(key)).status_code == 200


def test_cli_user_delete(client, capsys):
    generation = published_generation()
    assert cli(["user", "delete", "ada@example.com"]) == 0
    assert "Deleted ada@example.com" in capsys.readouterr().out
    assert client.get(f"/b/{generation.slug}").status_code == 410
    assert cli(["user", "delete", "ada@example.com"]) == 1
