"""The pages people use: create, progress and result, gallery, tokens, orders; and that nobody
opens anyone else's."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import numpy as np
from PIL import Image, ImageDraw
from sqlmodel import select

from include import ledger, storage
from include.db import session_scope
from include.generations import asset_key, upload_key
from include.models import Generation, StickerOrder, User, utcnow
from tests.api.images import jpeg
from tests.api.web.support import csrf, field_errors, sign_up
from tests.fakes.stripe_server import stripe_fake  # noqa: F401  (fixture)

ADDRESS = {"name": "Ada Lovelace", "address1": "12 St James's Square", "city": "London", "zip": "SW1Y 4JH", "country_code": "GB"}


def _user(email: str) -> User:
    with session_scope() as session:
        return session.exec(select(User).where(User.email == email)).one()


def _poster() -> bytes:
    image = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((48, 32, 208, 240), fill=(240, 120, 60, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def finished_buddy(user_id: int, prompt: str = "a happy pirate", age_minutes: int = 0, status: str = "succeeded") -> Generation:
    """A generation as the pipeline leaves it, with its photo and assets in storage."""
    generation = Generation(user_id=user_id, prompt=prompt, upload_path="", status=status)
    generation.upload_path = upload_key(generation.id)
    generation.created_at = utcnow() - timedelta(minutes=age_minutes)
    with storage.open_write(generation.upload_path) as out:
        out.write(jpeg())
    if status == "succeeded":
        for kind in ("webm", "webp", "gif", "poster"):
            key = asset_key(generation.id, kind)
            with storage.open_write(key) as out:
                out.write(_poster() if kind == "poster" else b"asset-" + kind.encode())
            generation.assets[kind] = key
    if status == "failed":
        generation.error = "We could not find a person in this photo."
        generation.refund_state = "refunded"
    with session_scope() as session:
        session.add(generation)
    return generation


def test_create_page_submits_with_the_chosen_motion(browser_client, fake_airflow):
    sign_up(browser_client, "ada@example.com")
    page = browser_client.get("/")
    assert all(f'<option value="{m}"' in page.text for m in ("bounce", "wave", "jump", "dance", "sway"))
    assert '<label for="image">Photo</label>' in page.text and '<label for="prompt">Prompt</label>' in page.text
    response = browser_client.post(
        "/",
        data={"prompt": "a happy pirate", "motion": "wave", "submission_key": "k1", "csrf_token": csrf(browser_client, "/")},
        files={"image": ("me.jpg", jpeg(), "image/jpeg")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    gid = response.headers["location"].rsplit("/", 1)[1]
    run = fake_airflow.runs[("bitbuddies_generate", gid)]
    assert run["conf"]["motion"] == "wave" and run["conf"]["prompt"] == "a happy pirate"
    assert ledger.balance(_user("ada@example.com").id) == 2
    # The same form sent twice (a double click) makes one buddy.
    again = browser_client.post(
        "/",
        data={"prompt": "a happy pirate", "motion": "wave", "submission_key": "k1", "csrf_token": csrf(browser_client, "/")},
        files={"image": ("me.jpg", jpeg(), "image/jpeg")},
        follow_redirects=False,
    )
    assert again.headers["location"] == response.headers["location"]
    progress = browser_client.get(f"/buddies/{gid}")
    assert f'data-events-url="/api/generations/{gid}/events"' in progress.text and "/static/progress.js" in progress.text
    # A borderline photo's wait for an operator is a stage of its own, shown only once it starts.
    review = re.search(r'<li data-stage="review" class="([^"]*)"[^>]*>(.*?)</li>', progress.text, re.S)
    assert review and "optional" in review.group(1) and "Waiting for review" in review.group(2)


def test_a_bad_photo_shows_the_apis_message_and_costs_nothing(browser_client):
    sign_up(browser_client, "bo@example.com")
    token = csrf(browser_client, "/")
    for files, message in (
        ({"image": ("notes.txt", b"hello", "text/plain")}, "The file is not a photo we can read: send a JPEG, PNG or WebP image."),
        ({"image": ("tiny.jpg", jpeg(40, 40), "image/jpeg")}, "The photo is too small (40x40): each side needs at least 128 pixels."),
        ({}, "Choose a photo first."),
    ):
        response = browser_client.post("/", data={"prompt": "me", "csrf_token": token}, files=files)
        assert response.status_code in (415, 422)
        assert message in response.text and "Nothing was charged." in response.text
    bad_motion = browser_client.post("/", data={"prompt": "me", "motion": "fly", "csrf_token": token}, files={"image": ("a.jpg", jpeg(), "image/jpeg")})
    assert "Unknown motion" in bad_motion.text
    assert ledger.balance(_user("bo@example.com").id) == 3
    with session_scope() as session:
        assert session.exec(select(Generation)).all() == []


def test_with_no_tokens_the_page_says_so_and_links_to_buying(browser_client, monkeypatch):
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_SIGNUP_TOKENS", "0")
    get_settings.cache_clear()
    sign_up(browser_client, "cat@example.com")
    page = browser_client.get("/").text
    assert "You are out of tokens." in page and 'href="/tokens"' in page
    assert re.search(r'<button type="submit" class="button big" disabled>Create buddy</button>', page)


def test_result_page_plays_downloads_and_shares(browser_client):
    sign_up(browser_client, "dan@example.com")
    generation = finished_buddy(_user("dan@example.com").id)
    page = browser_client.get(f"/buddies/{generation.id}").text
    assert f"/b/{generation.slug}/buddy.webm" in page and 'type=\'video/webm; codecs="vp9"\'' in page
    for file in ("buddy.webm", "buddy.webp", "buddy.gif", "poster.png"):
        url = f"/api/generations/{generation.id}/assets/{file}"
        assert f'href="{url}"' in page
        assert browser_client.get(url).status_code == 200  # the session cookie authenticates the download
    assert f'value="http://127.0.0.1:8000/b/{generation.slug}"' in page and "Copy link" in page
    for background in ("checkerboard", "light", "dark", "photo"):
        assert f'name="background" value="{background}"' in page
    assert browser_client.get(f"/buddies/{generation.id}/photo").headers["content-type"] == "image/jpeg"


def test_formats_still_encoding_show_as_preparing_until_ready(browser_client):
    sign_up(browser_client, "fay@example.com")
    generation = finished_buddy(_user("fay@example.com").id)
    with session_scope() as session:
        row = session.get(Generation, generation.id)
        row.assets = {**row.assets, "webp": None, "gif": None}
        session.add(row)
    page = browser_client.get(f"/buddies/{generation.id}").text
    assert f'data-status-url="/api/generations/{generation.id}"' in page
    for kind, file in (("webp", "buddy.webp"), ("gif", "buddy.gif")):
        assert f'data-pending-format="{kind}"' in page
        assert f' href="/api/generations/{generation.id}/assets/{file}"' not in page
    assert f'href="/api/generations/{generation.id}/assets/buddy.webm"' in page
    # The page's script polls the generation with the session cookie and swaps in the links.
    status = browser_client.get(f"/api/generations/{generation.id}").json()
    assert (status["formats_ready"], status["formats_pending"]) == (["webm", "poster"], ["webp", "gif"])

    with session_scope() as session:
        row = session.get(Generation, generation.id)
        row.assets = {**row.assets, "webp": asset_key(generation.id, "webp"), "gif": asset_key(generation.id, "gif")}
        session.add(row)
    finished = browser_client.get(f"/buddies/{generation.id}").text
    assert "data-pending-format" not in finished and "data-status-url" not in finished


def test_failed_buddy_shows_the_reason_and_the_refund(browser_client):
    sign_up(browser_client, "eli@example.com")
    generation = finished_buddy(_user("eli@example.com").id, status="failed")
    page = browser_client.get(f"/buddies/{generation.id}").text
    assert "We could not find a person in this photo." in page and "Your token was refunded." in page


def test_gallery_is_newest_first_and_paginated(browser_client):
    sign_up(browser_client, "fox@example.com")
    user_id = _user("fox@example.com").id
    for age in range(14):
        finished_buddy(user_id, prompt=f"buddy {age:02d}", age_minutes=age)
    first = browser_client.get("/buddies").text
    titles = re.findall(r'<span class="tile-title">([^<]+)</span>', first)
    assert titles == [f"buddy {age:02d}" for age in range(12)]
    assert "Page 1 of 2" in first and 'href="/buddies?page=2"' in first
    second = re.findall(r'<span class="tile-title">([^<]+)</span>', browser_client.get("/buddies?page=2").text)
    assert second == ["buddy 12", "buddy 13"]


def test_nobody_opens_anyone_elses_buddies_orders_or_streams(browser_client, other_browser):
    sign_up(browser_client, "ann@example.com")
    sign_up(other_browser, "ben@example.com")
    generation = finished_buddy(_user("ann@example.com").id)
    token = csrf(browser_client, "/orders/new")
    placed = browser_client.post(
        "/orders/new", data={"buddy": generation.id, "sheet_size": "A4", "copies": "1", "csrf_token": token, **ADDRESS}, follow_redirects=False
    )
    order_id = placed.headers["location"].rsplit("/", 1)[1]
    for path in (
        f"/buddies/{generation.id}",
        f"/buddies/{generation.id}/photo",
        f"/orders/{order_id}",
        f"/api/generations/{generation.id}",
        f"/api/generations/{generation.id}/events",
        f"/api/generations/{generation.id}/assets/buddy.gif",
        f"/api/sticker-orders/{order_id}/sheet.pdf",
    ):
        assert browser_client.get(path).status_code == 200 or path.endswith("sheet.pdf"), path
        assert other_browser.get(path).status_code == 404, path
    pay = other_browser.post(f"/orders/{order_id}/pay", data={"csrf_token": other_browser.cookies.get("bb_csrf")})
    assert pay.status_code == 404
    # The preview renders only the viewer's own buddies.
    assert other_browser.get(f"/orders/preview.png?buddy={generation.id}").status_code == 204
    assert other_browser.get(f"/orders/new?buddy={generation.id}").text.count("pick-title") == 0
    # Cookies authenticate reads only: the JSON API's writes still need an API key.
    assert browser_client.delete(f"/api/keys/1").status_code == 401


def test_tokens_page_without_stripe_says_buying_is_not_configured(browser_client):
    sign_up(browser_client, "gil@example.com")
    page = browser_client.get("/tokens").text
    assert "Buying tokens is not configured on this server." in page
    assert browser_client.post("/tokens", data={"pack": "pack_10", "csrf_token": csrf(browser_client, "/tokens")}).status_code == 503


def test_token_purchase_return_page_confirms_once_credited(browser_client, stripe_fake):
    sign_up(browser_client, "hal@example.com")
    stripe_fake.webhook_sender = lambda payload, headers: browser_client.post("/api/webhooks/stripe", content=payload, headers=headers).status_code
    response = browser_client.post(
        "/tokens", data={"pack": "pack_10", "submission_key": "s1", "csrf_token": csrf(browser_client, "/tokens")}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"].startswith(stripe_fake.url + "/pay/cs_")
    session_id = response.headers["location"].rsplit("/", 1)[1]
    waiting = browser_client.get(f"/tokens/return?session_id={session_id}").text
    assert "Still confirming your payment" in waiting and 'data-refresh-seconds=' in waiting
    stripe_fake.complete_session(session_id)
    done = browser_client.get(f"/tokens/return?session_id={session_id}").text
    assert "Payment received, 10 tokens added." in done and "You now have 13 tokens." in done


def test_order_form_shows_errors_per_field_and_places_the_order(browser_client, monkeypatch, fake_airflow):
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_ORDERS_DEV_AUTOPAY", "true")
    get_settings.cache_clear()
    sign_up(browser_client, "ida@example.com")
    generation = finished_buddy(_user("ida@example.com").id)
    token = csrf(browser_client, "/orders/new")
    bad = browser_client.post("/orders/new", data={"sheet_size": "A4", "copies": "0", "name": "Ida", "country_code": "GBR", "csrf_token": token})
    assert bad.status_code == 422
    errors = field_errors(bad.text)
    assert errors["buddies"] == "Choose at least one buddy."
    assert errors["copies"] == "Copies must be a whole number from 1 to 20."
    assert errors["address1"] == "Address is required." and errors["city"] == "City is required." and errors["zip"] == "Postal code is required."
    assert "country_code" in errors and "name" not in errors
    assert 'value="Ida"' in bad.text  # what was typed stays

    preview = browser_client.get(f"/orders/preview.png?buddy={generation.id}&size=Letter&copies=2")
    image = Image.open(io.BytesIO(preview.content))
    assert image.format == "PNG" and abs(image.height / image.width - 11 / 8.5) < 0.01
    assert (np.asarray(image.convert("L")) < 200).mean() > 0.005

    placed = browser_client.post(
        "/orders/new", data={"buddy": generation.id, "sheet_size": "A4", "copies": "2", "csrf_token": token, **ADDRESS}, follow_redirects=False
    )
    order_page = browser_client.get(placed.headers["location"]).text
    assert '<button type="submit" class="button big">Pay</button>' in order_page
    order_id = placed.headers["location"].rsplit("/", 1)[1]
    paid = browser_client.post(f"/orders/{order_id}/pay", data={"csrf_token": token}, follow_redirects=False)
    assert paid.headers["location"] == f"/orders/{order_id}"
    with session_scope() as session:
        order = session.get(StickerOrder, order_id)
    assert order.status == "paid" and order.payment_provider == "dev_autopay"
    assert ("bitbuddies_sticker_order", order_id) in fake_airflow.runs
    assert "Payment received." in browser_client.get(f"/orders/{order_id}").text or "Marked paid" in browser_client.get(f"/orders/{order_id}").text


def test_the_owner_deletes_a_buddy_from_its_page(browser_client, other_browser):
    sign_up(browser_client, "gil@example.com")
    generation = finished_buddy(_user("gil@example.com").id)
    page = browser_client.get(f"/buddies/{generation.id}").text
    assert f'action="/buddies/{generation.id}/delete"' in page and "Delete buddy" in page
    # Without the form's CSRF token nothing happens; another person gets the same 404 as for nothing.
    assert browser_client.post(f"/buddies/{generation.id}/delete").status_code == 403
    sign_up(other_browser, "hal@example.com")
    assert other_browser.post(f"/buddies/{generation.id}/delete", data={"csrf_token": csrf(other_browser, "/")}).status_code == 404
    assert browser_client.get(f"/b/{generation.slug}").status_code == 200

    deleted = browser_client.post(f"/buddies/{generation.id}/delete", data={"csrf_token": csrf(browser_client, "/")}, follow_redirects=False)
    assert deleted.status_code in (302, 303) and deleted.headers["location"].endswith("/buddies")
    assert browser_client.get(f"/buddies/{generation.id}").status_code == 404
    assert browser_client.get(f"/b/{generation.slug}").status_code == 410
    assert generation.id not in browser_client.get("/buddies").text
    assert not storage.exists(generation.upload_path)
