"""Request bodies are limited while they stream in, and keys are checked before a body is read.

An ASGI middleware in front of every route (pure ASGI, so nothing buffers the body first):

- a body over its limit gets 413 after at most the limit (plus the chunk that crossed it) was
  read: at once from ``Content-Length``, or as the chunks arrive when there is none (chunked
  transfer encoding), by raising from ``receive`` (FastAPI re-raises an HTTPException from body
  parsing as it is);
- limits by kind: photo uploads (``multipart/form-data``) ``max_upload_bytes`` plus the envelope,
  webhooks 1 MiB, any other body ``max_request_bytes``;
- an ``/api/`` request with a body and a bearer key (or none) is refused with 401 before its body
  is read unless the key is valid: a stranger cannot make the API read 60 MiB. Webhooks carry
  their own signatures; requests with a session cookie (the web app's forms) are authenticated by
  their routes.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import HTTPException, status
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from include import accounts
from include.db import get_engine
from include.settings import get_settings

WEBHOOK_BODY_BYTES = 1024 * 1024
# Allowance for the multipart envelope and the prompt on top of the photo itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UNSIGNED_PATHS = ("/api/webhooks/",)


class BodyTooLarge(HTTPException):
    def __init__(self, message: str) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, message)


def _size(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MiB" if limit >= 1024 * 1024 else f"{limit / 1024:g} KiB"


def body_limit(path: str, content_type: str) -> tuple[int, str]:
    """(bytes allowed, the message when over) for a request's body."""
    settings = get_settings()
    if content_type.startswith("multipart/form-data") and not path.startswith(_UNSIGNED_PATHS):
        limit = settings.max_upload_bytes
        return limit + MULTIPART_OVERHEAD_BYTES, f"The photo is too big: the limit is {_size(limit)}."
    limit = WEBHOOK_BODY_BYTES if path.startswith(_UNSIGNED_PATHS) else settings.max_request_bytes
    return limit, f"The request body is too large: the limit is {_size(limit)}."


class RequestBodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        path = scope["path"]
        if path.startswith("/api/") and not path.startswith(_UNSIGNED_PATHS) and "cookie" not in headers:
            if not await asyncio.to_thread(_key_is_valid, headers.get("authorization", "")):
                await _answer(send, _unauthorized(headers.get("authorization")))
                return
        limit, too_large = body_limit(path, headers.get("content-type", ""))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, BodyTooLarge(too_large))
            return
        await self.app(scope, _limited(receive, limit, too_large), send)


def _key_is_valid(authorization: str) -> bool:
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return False
    with Session(get_engine()) as session:
        user = accounts.user_for_api_key(session, key.strip())
        return user is not None and user.deleted_at is None


def _unauthorized(authorization: str | None) -> HTTPException:
    detail = "Invalid API key." if authorization else "Missing API key: send 'Authorization: Bearer <your bb_... key>'."
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def _limited(receive: Receive, limit: int, too_large: str) -> Receive:
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(too_large)
        return message

    return limited_receive


async def _answer(send: Send, error: HTTPException) -> None:
    body = json.dumps({"detail": error.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    # The unread body stays unread: the server closes the connection after this answer.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
