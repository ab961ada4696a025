"""Helpers for the page tests: a browser-like client that signs up through the forms."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"


def csrf(client: TestClient, path: str = "/login") -> str:
    """The CSRF token the page at ``path`` puts in its forms."""
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def sign_up(client: TestClient, email: str, password: str = PASSWORD):
    response = client.post("/signup", data={"email": email, "password": password, "csrf_token": csrf(client, "/signup")}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return response


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="field-error" id="([\w-]+)-error">([^<]+)</p>', html))
