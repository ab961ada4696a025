"""Sign up, sign in, sign out, the session cookie and CSRF protection."""

from __future__ import annotations

from sqlmodel import select

from include import accounts, ledger
from include.db import session_scope
from include.models import LedgerEntry, User, WebSession
from tests.api.web.support import PASSWORD, csrf, field_errors, sign_up


def test_sign_up_signs_in_and_grants_the_free_tokens_once(browser_client):
    response = sign_up(browser_client, "Ada@Example.com")
    assert response.headers["location"] == "/"
    cookies = {c.split("=")[0]: c for c in response.headers.get_list("set-cookie")}
    session_cookie = cookies["bb_session"].lower()
    assert "httponly" in session_cookie and "samesite=lax" in session_cookie and "secure" not in session_cookie
    home = browser_client.get("/")
    assert "Create buddy" in home.text and "You have <strong>3</strong> tokens" in home.text
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == "ada@example.com")).one()
        entries = session.exec(select(LedgerEntry).where(LedgerEntry.user_id == user.id)).all()
    assert [(e.reason, e.amount, e.idempotency_key) for e in entries] == [("grant", 3, accounts.signup_grant_key(user.id))]
    # The grant is keyed by the user: granting again changes nothing.
    ledger.grant(user.id, 3, key=accounts.signup_grant_key(user.id))
    assert ledger.balance(user.id) == 3


def test_signup_tokens_follow_the_setting(browser_client, monkeypatch):
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_SIGNUP_TOKENS", "5")
    get_settings.cache_clear()
    sign_up(browser_client, "bea@example.com")
    assert "You have <strong>5</strong> tokens" in browser_client.get("/").text


def test_session_cookie_is_secure_over_https(fresh_app_db, airflow_client):
    from fastapi.testclient import TestClient

    from api.main import app

    client = TestClient(app, base_url="https://testserver")
    response = sign_up(client, "sec@example.com")
    session_cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("bb_session="))
    assert "secure" in session_cookie.lower()


def test_weak_password_taken_email_and_bad_email_say_so_and_change_nothing(browser_client):
    token = csrf(browser_client, "/signup")
    weak = browser_client.post("/signup", data={"email": "cy@example.com", "password": "short", "csrf_token": token})
    assert weak.status_code == 422
    assert field_errors(weak.text) == {"password": "Choose a password of at least 10 characters."}
    guessable = browser_client.post("/signup", data={"email": "cy@example.com", "password": "password123", "csrf_token": token})
    assert "too easy to guess" in field_errors(guessable.text)["password"]
    bad_email = browser_client.post("/signup", data={"email": "not-an-email", "password": PASSWORD, "csrf_token": token})
    assert "email" in field_errors(bad_email.text)
    with session_scope() as session:
        assert session.exec(select(User)).all() == []

    sign_up(browser_client, "cy@example.com")
    browser_client.cookies.clear()
    taken = browser_client.post("/signup", data={"email": "CY@example.com", "password": PASSWORD, "csrf_token": csrf(browser_client, "/signup")})
    assert taken.status_code == 422
    assert field_errors(taken.text) == {"email": "An account with this email already exists: sign in instead."}
    assert 'value="CY@example.com"' in taken.text  # the form keeps what was typed
    with session_scope() as session:
        assert len(session.exec(select(User)).all()) == 1


def test_sign_in_with_wrong_password_then_right_one_goes_to_next(browser_client):
    sign_up(browser_client, "dee@example.com")
    browser_client.cookies.clear()
    token = csrf(browser_client)
    wrong = browser_client.post("/login", data={"email": "dee@example.com", "password": "not the password", "csrf_token": token})
    assert wrong.status_code == 401 and field_errors(wrong.text) == {"password": "Wrong email or password."}
    unknown = browser_client.post("/login", data={"email": "nobody@example.com", "password": PASSWORD, "csrf_token": token})
    assert field_errors(unknown.text) == {"password": "Wrong email or password."}  # no hint whether the email exists
    right = browser_client.post(
        "/login", data={"email": "dee@example.com", "password": PASSWORD, "next": "/account", "csrf_token": token}, follow_redirects=False
    )
    assert right.status_code == 303 and right.headers["location"] == "/account"
    assert browser_client.get("/account").status_code == 200


def test_next_never_leaves_the_site(browser_client):
    sign_up(browser_client, "eve@example.com")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        browser_client.cookies.delete("bb_session")
        token = csrf(browser_client)
        response = browser_client.post(
            "/login", data={"email": "eve@example.com", "password": PASSWORD, "next": target, "csrf_token": token}, follow_redirects=False
        )
        assert response.headers["location"] == "/"


def test_pages_need_a_signed_in_user(browser_client):
    for path in ("/buddies", "/account", "/tokens", "/orders/new", "/buddies/abc"):
        response = browser_client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/"), path
    assert "Sign up" in browser_client.get("/").text  # the welcome page


def test_sign_out_ends_the_session_on_the_server(browser_client, other_browser):
    sign_up(browser_client, "fay@example.com")
    stolen = browser_client.cookies.get("bb_session")
    response = browser_client.post("/logout", data={"csrf_token": browser_client.cookies.get("bb_csrf")}, follow_redirects=False)
    assert response.status_code == 303
    with session_scope() as session:
        assert session.exec(select(WebSession)).all() == []
    other_browser.cookies.set("bb_session", stolen)
    assert other_browser.get("/account", follow_redirects=False).status_code == 303  # a copied cookie no longer works


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(browser_client, other_browser):
    signup = browser_client.post("/signup", data={"email": "gus@example.com", "password": PASSWORD})
    assert signup.status_code == 403 and "could not be sent" in signup.text
    with session_scope() as session:
        assert session.exec(select(User)).all() == []

    sign_up(browser_client, "gus@example.com")
    # A token from another browser (an attacker's own) does not match this browser's cookie.
    foreign = csrf(other_browser, "/signup")
    for path, data in (
        ("/account/keys", {"name": "sneaky"}),
        ("/logout", {}),
        ("/tokens", {"pack": "pack_10"}),
        ("/orders/new", {"buddy": "x"}),
    ):
        assert browser_client.post(path, data=data).status_code == 403, path
        assert browser_client.post(path, data=data | {"csrf_token": foreign}).status_code == 403, path
    refused = browser_client.post("/", data={"prompt": "hi"}, files={"image": ("a.jpg", b"x", "image/jpeg")})
    assert refused.status_code == 403
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == "gus@example.com")).one()
    assert accounts.list_api_keys(user.id) == []
    assert browser_client.get("/account").status_code == 200  # still signed in


def test_operator_created_users_have_no_password_and_cannot_sign_in(browser_client):
    accounts.create_user("op@example.com", password=None, tokens=1)
    response = browser_client.post("/login", data={"email": "op@example.com", "password": PASSWORD, "csrf_token": csrf(browser_client)})
    assert response.status_code == 401
