"""Several named API keys per user: the JSON API, the account page, and the old single-key column."""

from __future__ import annotations

import re

from sqlalchemy import text

from include import accounts
from sqlmodel import Session

from include.db import get_engine
from tests.api.support import auth, make_user
from tests.api.web.support import csrf, sign_up


def test_keys_are_created_listed_and_revoked_at_once(client):
    user, first_key = make_user("kim@example.com")
    created = client.post("/api/keys", headers=auth(first_key), json={"name": "laptop"})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "laptop" and body["key"].startswith("bb_") and body["prefix"] == body["key"][:10]
    assert client.get("/api/me", headers=auth(body["key"])).json()["email"] == "kim@example.com"

    listed = client.get("/api/keys", headers=auth(first_key)).json()
    assert [k["name"] for k in listed] == ["laptop", "test"]
    assert all("key" not in k for k in listed)  # the key itself is never shown again

    assert client.delete(f"/api/keys/{body['id']}", headers=auth(first_key)).status_code == 204
    refused = client.get("/api/me", headers=auth(body["key"]))
    assert refused.status_code == 401 and refused.json()["detail"] == "Invalid API key."
    assert client.get("/api/keys", headers=auth(first_key)).json()[0]["revoked_at"] is not None
    assert client.delete(f"/api/keys/{body['id']}", headers=auth(first_key)).status_code == 204  # repeat: no change


def test_a_user_cannot_see_or_revoke_another_users_keys(client):
    _, ada = make_user("ada@example.com")
    _, bob = make_user("bob@example.com")
    ada_key = client.post("/api/keys", headers=auth(ada), json={"name": "ci"}).json()
    assert [k["name"] for k in client.get("/api/keys", headers=auth(bob)).json()] == ["test"]
    assert client.delete(f"/api/keys/{ada_key['id']}", headers=auth(bob)).status_code == 404
    assert client.get("/api/me", headers=auth(ada_key["key"])).status_code == 200


def test_key_names_are_required(client):
    _, key = make_user()
    assert client.post("/api/keys", headers=auth(key), json={"name": "  "}).status_code == 422
    assert client.post("/api/keys", headers=auth(key), json={}).status_code == 422


def test_account_page_shows_a_new_key_once_and_revokes_it(browser_client):
    sign_up(browser_client, "lee@example.com")
    token = csrf(browser_client, "/account")
    page = browser_client.post("/account/keys", data={"name": "my laptop", "csrf_token": token})
    key = re.search(r'id="new-key" class="key-secret" type="text" readonly value="(bb_[^"]+)"', page.text).group(1)
    assert "<td>my laptop</td>" in page.text  # listed on the same page
    assert browser_client.get("/api/me", headers=auth(key)).json()["email"] == "lee@example.com"
    again = browser_client.get("/account").text
    assert key not in again and key[:10] in again and "my laptop" in again

    key_id = re.search(r'action="/account/keys/(\d+)/revoke"', again).group(1)
    browser_client.post(f"/account/keys/{key_id}/revoke", data={"csrf_token": token})
    assert browser_client.get("/api/me", headers=auth(key)).status_code == 401
    assert "Revoked" in browser_client.get("/account").text

    empty = browser_client.post("/account/keys", data={"name": "", "csrf_token": token})
    assert empty.status_code == 422 and 'id="name-error"' in empty.text


def test_the_old_single_key_column_moves_to_the_keys_table_and_back(fresh_app_db):
    engine = get_engine()
    migrate(engine, "downgrade", "0001")  # a database from before named keys and passwords
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO \"user\" (id, email, api_key_hash, created_at) VALUES (7, 'old@example.com', :h, '2026-01-01 00:00:00')"),
            {"h": accounts.hash_api_key("bb_oldkey")},
        )
        # Rows pointing at the user: a rebuild of "user" would be refused by the foreign keys.
        conn.execute(
            text(
                "INSERT INTO ledger_entry (user_id, amount, reason, idempotency_key, created_at) "
                "VALUES (7, 2, 'grant', 'g:7', '2026-01-01 00:00:00')"
            )
        )
    migrate(engine, "upgrade", "head")
    with Session(engine) as session:
        assert accounts.user_for_api_key(session, "bb_oldkey").email == "old@example.com"
    assert [k.name for k in accounts.list_api_keys(7)] == ["default"]
    accounts.create_user("new@example.com", "correct horse battery")  # the old NOT NULL column is gone

    migrate(engine, "downgrade", "0001")
    with engine.begin() as conn:
        keys = dict(conn.execute(text('SELECT email, api_key_hash FROM "user"')).all())
    assert keys["old@example.com"] == accounts.hash_api_key("bb_oldkey")  # the key is back where it was
    assert keys["new@example.com"].startswith("no-key-")


def migrate(engine, direction: str, revision: str) -> None:
    from alembic import command

    from include.migrations import config

    with engine.begin() as conn:
        getattr(command, direction)(config(conn), revision)
