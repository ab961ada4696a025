"""The machine's Postgres and Redis for tests of the production profile.

Locally a test that needs one of them skips with the reason when it is not running; under
``CI=true`` it fails instead, because CI starts both (``.ci/run``) and a skip would hide a break.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_SERVER_URL = os.environ.get("BITBUDDIES_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS_SERVER_URL = os.environ.get("BITBUDDIES_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _unavailable(what: str, reason: str) -> None:
    message = f"{what} is not running ({reason}); the production-profile tests need it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " and CI must run them", pytrace=False)
    pytest.skip(message)


def postgres_server_url() -> str:
    """The Postgres server URL (no database); skips or fails when it cannot be reached."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"{POSTGRES_SERVER_URL}/postgres")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any connection failure means "not available here"
        _unavailable("Postgres", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    return POSTGRES_SERVER_URL


def redis_server_url() -> str:
    """The Redis server URL (no db index); skips or fails when it does not answer PING."""
    from urllib.parse import urlsplit

    parts = urlsplit(REDIS_SERVER_URL)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                raise ConnectionError("no PONG")
    except OSError as exc:
        _unavailable("Redis", f"{type(exc).__name__}: {exc}")
    return REDIS_SERVER_URL
