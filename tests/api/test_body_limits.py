"""Request bodies are limited while they stream in; keys are checked before a body is read.

Driven at the ASGI level so the test counts exactly how many body bytes the app pulled: a 60 MiB
body offered in 64 KiB chunks, with and without Content-Length. One test does the same over a
real socket against uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn

from api.main import app
from tests.api import images
from tests.api.support import make_user

CHUNK = 64 * 1024
SIXTY_MIB = 60 * 1024 * 1024


# A well-formed start of a photo upload; the rest of the body is the photo's (endless) bytes.
UPLOAD_HEAD = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'


def call(method: str, path: str, headers: dict[str, str], body_size: int, declare_length: bool, query: bytes = b""):
    """Run one request through the app; returns (status, answer json, body bytes the app read, headers)."""
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        size = min(CHUNK, body_size - pulled)
        chunk = (UPLOAD_HEAD + b"\0" * size)[:size] if pulled == 0 else b"\0" * size
        pulled += size
        return {"type": "http.request", "body": chunk, "more_body": pulled < body_size}

    async def send(message):
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declare_length:
        raw_headers.append((b"content-length", str(body_size).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query, "headers": raw_headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(answer or b"null"), pulled, dict((k.decode(), v.decode()) for k, v in start["headers"])


MULTIPART = {"content-type": "multipart/form-data; boundary=xyz"}


@pytest.mark.parametrize("declare_length", [True, False])
def test_sixty_mib_without_a_key_is_401_before_any_byte_is_read(fresh_app_db, declare_length):
    status, answer, pulled, _ = call("POST", "/api/generations", MULTIPART, SIXTY_MIB, declare_length)
    assert status == 401 and pulled == 0
    assert answer == {"detail": "Missing API key: send 'Authorization: Bearer <your bb_... key>'."}
    status, answer, pulled, _ = call("POST", "/api/generations", {**MULTIPART, "authorization": "Bearer bb_nope"}, SIXTY_MIB, declare_length)
    assert (status, answer, pulled) == (401, {"detail": "Invalid API key."}, 0)


def test_sixty_mib_with_a_key_is_413_after_at_most_the_limit(fresh_app_db):
    _, key = make_user(tokens=1)
    headers = {**MULTIPART, "authorization": f"Bearer {key}"}
    limit = 15 * 1024 * 1024 + 64 * 1024  # max_upload_bytes + the multipart envelope
    status, answer, pulled, _ = call("POST", "/api/generations", headers, SIXTY_MIB, declare_length=True)
    assert (status, pulled) == (413, 0)  # Content-Length says it all
    status, answer, pulled, _ = call("POST", "/api/generations", headers, SIXTY_MIB, declare_length=False)
    assert status == 413 and answer == {"detail": "The photo is too big: the limit is 15 MiB."}
    assert limit < pulled <= limit + CHUNK  # the chunk that crossed the limit, and not one more


@pytest.mark.parametrize("declare_length", [True, False])
def test_webhook_bodies_over_one_mib_are_413(fresh_app_db, declare_length, monkeypatch):
    from include.settings import get_settings

    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")  # so the Stripe route reads its body
    get_settings.cache_clear()
    token = f"token={get_settings().resolved_print_webhook_secret}".encode()  # so the print route reads its body
    for path in ("/api/webhooks/stripe", "/api/webhooks/print"):
        status, answer, pulled, _ = call("POST", path, {"content-type": "application/json"}, 2 * 1024 * 1024, declare_length, token)
        assert status == 413 and answer == {"detail": "The request body is too large: the limit is 1 MiB."}, path
        assert pulled <= 1024 * 1024 + CHUNK


def test_json_bodies_are_limited_too(fresh_app_db):
    _, key = make_user()
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    status, _, pulled, _ = call("POST", "/api/sticker-orders", headers, 5 * 1024 * 1024, declare_length=False)
    assert status == 413 and pulled <= 1024 * 1024 + CHUNK


def test_a_small_valid_upload_still_goes_through(client, user_with_tokens):
    _, key = user_with_tokens
    response = client.post(
        "/api/generations", headers={"Authorization": f"Bearer {key}"}, files={"image": ("me.jpg", images.jpeg(), "image/jpeg")}, data={"prompt": "hi"}
    )
    assert response.status_code == 202, response.text


def test_over_a_real_socket_the_server_answers_before_the_client_finished_sending(fresh_app_db):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"POST /api/generations HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
                f"Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            sent = 0
            sock.settimeout(0.05)
            answer = b""
            while sent < SIXTY_MIB and not answer:
                try:
                    sock.sendall(b"10000\r\n" + b"\0" * CHUNK + b"\r\n")
                    sent += CHUNK
                except OSError:
                    break  # the server closed the connection
                try:
                    answer = sock.recv(4096)
                except TimeoutError:
                    pass
            assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
            assert sent < SIXTY_MIB // 4  # refused long before the body was through
    finally:
        server.should_exit = True
        thread.join(10)
