"""User B gets 404 on every route that takes an id of user A's, exactly as for an id that does not
exist; A's data is unchanged afterwards. The route list comes from the app itself, so a new
route with an id is covered (or fails here until it is)."""

from __future__ import annotations

import re

import pytest

from api.main import app
from include import orders, storage
from tests.api.routes.test_share_routes import published_generation
from tests.api.routes.test_sticker_orders import ADDRESS
from tests.api.support import auth, make_user

# Public by design: the share page and the generation page are reached by their unguessable
# slug or id alone, without a key; the internal route takes the pipeline's token, not a user's.
PUBLIC_OR_INTERNAL = {"/b/{slug}", "/b/{slug}/{name}", "/b/{slug}/buddy.json", "/b/{slug}/embed", "/g/{generation_id}", "/internal/generations/{generation_id}/events"}
BODIES = {("PATCH", "/api/generations/{generation_id}"): {"share_title": "mine now"}}


def owned_routes() -> list[tuple[str, str]]:
    routes = []
    for route in app.routes:
        path = getattr(route, "path", "")
        # Bearer-key routes; the web app's pages (session cookie) have their own cross-user tests.
        if "{" in path and path not in PUBLIC_OR_INTERNAL and path.startswith("/api/"):
            routes += [(method, path) for method in sorted(route.methods - {"HEAD", "OPTIONS"})]
    return routes


@pytest.fixture
def world(client):
    generation = published_generation()  # user A's finished buddy
    from include import accounts

    a_new_key = accounts.create_api_key(generation.user_id, "test")
    a_key = a_new_key.key
    order = orders.create_order(generation.user_id, [generation.id], "A4", 1, ADDRESS)
    with storage.open_write(orders.sheet_key(order.id)) as out:
        out.write(b"%PDF-1.4")
    _, b_key = make_user("bob@example.com", tokens=1)
    ids = {"generation_id": generation.id, "order_id": order.id, "key_id": str(a_new_key.record.id), "name": "buddy.webm"}
    return ids, a_key, b_key


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


def test_the_matrix_covers_every_route_with_an_id():
    covered = {path for _, path in owned_routes()}
    assert covered >= {
        "/api/generations/{generation_id}",
        "/api/generations/{generation_id}/events",
        "/api/generations/{generation_id}/assets/{name}",
        "/api/sticker-orders/{order_id}",
        "/api/sticker-orders/{order_id}/sheet.pdf",
    }


@pytest.mark.parametrize(("method", "path"), owned_routes(), ids=lambda v: v)
def test_user_b_gets_404_on_user_as_ids(client, world, method, path):
    ids, a_key, b_key = world
    url = fill(path, ids)
    body = BODIES.get((method, path))
    as_b = client.request(method, url, headers=auth(b_key), json=body)
    missing = client.request(method, fill(path, {**ids, "generation_id": "0" * 32, "order_id": "0" * 32, "key_id": "999999"}), headers=auth(b_key), json=body)
    assert as_b.status_code == 404, (method, url, as_b.text)
    assert as_b.json() == missing.json()  # indistinguishable from an id that does not exist
    # A still has it, unchanged.
    if path.startswith("/api/keys"):
        assert client.get("/api/me", headers=auth(a_key)).status_code == 200  # A's key still works
    elif path.startswith("/api/generations"):
        mine = client.get(f"/api/generations/{ids['generation_id']}", headers=auth(a_key))
        assert mine.status_code == 200 and mine.json()["share_title"] is None
    else:
        assert client.get(f"/api/sticker-orders/{ids['order_id']}", headers=auth(a_key)).status_code == 200
