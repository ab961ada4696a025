"""api/sse.py: what the API's SSE stream writes, the client parser reads back (comments skipped)."""

from __future__ import annotations

from api.sse import parse_sse
from include import events
from tests.api.support import fresh_app_db  # noqa: F401  (fixture)
from tests.include.test_events import generation  # noqa: F401  (fixture)


def test_sse_round_trip(generation):
    event = events.record(generation, "queue_position", {"position": 3}, key="q")
    (parsed,) = list(parse_sse(event.sse().decode().splitlines(keepends=True) + [": keep-alive\n", "\n"]))
    assert parsed.id == "1" and parsed.event == "queue_position"
    assert parsed.json()["position"] == 3 and parsed.json()["generation_id"] == generation
