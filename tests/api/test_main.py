"""api/main.py: what the app's process logs."""

from __future__ import annotations

import logging

from api.main import QuietInternalAccess


def access(path: str, status: int, method: str = "POST") -> logging.LogRecord:
    # As uvicorn's access logger builds its records.
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", method, path, "1.1", status), None)


def test_successful_internal_event_posts_stay_out_of_the_access_log():
    quiet = QuietInternalAccess()
    assert not quiet.filter(access("/internal/generations/g1/events", 201))
    assert quiet.filter(access("/internal/generations/g1/events", 401))  # a refused publisher is worth a line
    assert quiet.filter(access("/internal/generations/nope/events", 404))
    assert quiet.filter(access("/api/generations", 202))
    assert quiet.filter(logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "plain message", None, None))
