"""Live progress: ``GET /api/generations/{id}/events`` (Server-Sent Events, owner only) and the
internal endpoint the pipeline publishes to (``POST /internal/generations/{id}/events``).

The stream replays the stored history (after ``Last-Event-ID`` when the client sends one), then
the live events, with a heartbeat comment while idle, and ends after the terminal event
(``succeeded`` or ``failed``). include/events.py owns the store, api/event_stream.py the
fan-out and the stream.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from fastapi.security import HTTPAuthorizationCredentials

from api.deps import SESSION_COOKIE, api_key_scheme, authenticate
from api import event_stream
from include import events, quotas
from include.db import session_scope
from include.models import Generation
from include.settings import get_settings

router = APIRouter(prefix="/generations", tags=["generations"])
internal_router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)


def get_event_bus(request: Request) -> event_stream.EventBus:
    bus = getattr(request.app.state, "events_bus", None)
    if bus is None:  # the app runs without its lifespan (a bare TestClient): in-process only
        bus = request.app.state.events_bus = event_stream.EventBus()
    return bus


EventBusDep = Annotated[event_stream.EventBus, Depends(get_event_bus)]

def _admit(credentials: HTTPAuthorizationCredentials | None, session_token: str | None, generation_id: str) -> quotas.StreamSlot:
    # One thread hop holding one pooled connection, released before the stream starts: a stream
    # lasts minutes, and sync dependencies would hold a connection across several threadpool
    # hops, which deadlocks the pool when hundreds of clients connect at once. It runs on the
    # streams' pool, not the requests' one.
    with session_scope() as session:
        user = authenticate(session, credentials, session_token)
        generation = session.get(Generation, generation_id)
        if generation is None or generation.user_id != user.id or generation.deleted_at is not None:
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Generation not found.")
    # Taken before the stream starts: the stream over the user's limit is refused with 429.
    return quotas.take_event_stream_slot(user.id)


async def _release_after(slot: quotas.StreamSlot, stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """The stream; its user's stream slot is given back when it ends or the client leaves."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        slot.release()


def _last_event_id(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="Last-Event-ID must be an event id (a number).") from None


@router.get(
    "/{generation_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The generation's progress as Server-Sent Events"}},
)
async def generation_events(
    request: Request,
    bus: EventBusDep,
    generation_id: str,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)],
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Progress of one of the caller's generations: ``id:`` counts up per generation, ``event:``
    is the type, ``data:`` JSON (stage, percent, eta_seconds, queue position, error, refund).
    A browser's ``EventSource`` (which cannot send the header) is authenticated by its session cookie."""
    after = _last_event_id(last_event_id)
    slot = await event_stream.in_stream_pool(_admit, credentials, request.cookies.get(SESSION_COOKIE), generation_id)
    return StreamingResponse(
        _release_after(slot, event_stream.stream(bus, generation_id, after)),
        media_type="text/event-stream",
        # No caching, and no buffering by a reverse proxy (nginx honours X-Accel-Buffering).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class EventIn(BaseModel):
    type: str = Field(description="One of include.events.EVENT_TYPES")
    data: dict[str, Any] = Field(default_factory=dict)
    key: str | None = Field(default=None, max_length=200, description="What caused it; a repeat is stored once")


def require_internal_token(authorization: Annotated[str | None, Header()] = None) -> None:
    expected = f"Bearer {get_settings().resolved_internal_token}"
    if not authorization or not secrets.compare_digest(authorization.encode(), expected.encode()):
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="Internal endpoint: bad or missing token.")


@internal_router.post(
    "/generations/{generation_id}/events", status_code=status.HTTP_201_CREATED, dependencies=[Depends(require_internal_token)]
)
async def publish_event(generation_id: str, body: EventIn, bus: EventBusDep) -> dict[str, Any]:
    """Store a pipeline event and hand it to the live subscribers (of every API process)."""
    if body.type not in events.EVENT_TYPES:
        raise HTTPException(status_code=422, detail=f"Unknown event type {body.type!r}.")
    try:
        event = await asyncio.to_thread(events.record, generation_id, body.type, body.data, body.key)
    except events.UnknownGeneration:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Generation not found.") from None
    await bus.published(event)
    return {"generation_id": event.generation_id, "seq": event.seq, "type": event.type, "data": event.data}
