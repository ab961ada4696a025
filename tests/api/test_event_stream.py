"""api/event_stream.py: the fan-out to a process's subscribers and the SSE stream (history, live, gaps)."""

from __future__ import annotations

import asyncio

from api import event_stream
from api.sse import parse_sse
from include import events
from include.generations import mark_succeeded
from tests.api.support import fresh_app_db  # noqa: F401  (fixture)
from tests.include.test_events import generation  # noqa: F401  (fixture)


def test_bus_delivers_to_the_generation_subscribers_only():
    async def scenario():
        bus = event_stream.EventBus()
        mine, other = bus.subscribe("a" * 32), bus.subscribe("b" * 32)
        from include.models import utcnow

        await bus.published(events.Event("a" * 32, 1, "retry", {}, utcnow()))
        assert mine.queue.qsize() == 1 and other.queue.qsize() == 0
        bus.unsubscribe(mine)
        bus.unsubscribe(other)
        assert bus.subscriber_count == 0

    asyncio.run(scenario())


def test_stream_replays_then_ends_at_terminal(generation):
    events.record(generation, "stage_started", {"stage": "charge"}, key="s:charge")
    mark_succeeded(generation, {})

    async def collect():
        return [chunk async for chunk in event_stream.stream(event_stream.EventBus(), generation, 0, heartbeat_seconds=0.2)]

    chunks = asyncio.run(collect())
    assert chunks[0] == event_stream.STREAM_OPENING  # subscribed: the reconnection delay, then the history
    assert [e.event for e in parse_sse(b"".join(chunks).decode().splitlines(True))] == ["stage_started", "succeeded"]


def test_stream_goes_live_and_fills_gaps_from_the_store(generation):
    async def scenario():
        bus = event_stream.EventBus()
        received = []

        async def consume():
            async for chunk in event_stream.stream(bus, generation, 0, heartbeat_seconds=5):
                received.extend(parse_sse(chunk.decode().splitlines(True)))

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        first = await asyncio.to_thread(events.record, generation, "stage_started", {"stage": "charge"}, "s1")
        await bus.published(first)
        # Stored but its notification lost: the next one reveals the gap, filled from the store.
        await asyncio.to_thread(events.record, generation, "stage_finished", {"stage": "charge", "duration_seconds": 1}, "f1")
        await asyncio.to_thread(mark_succeeded, generation, {})
        last = await asyncio.to_thread(events.ensure_terminal_event, generation)
        await bus.published(last)
        await bus.published(first)  # a duplicate (NOTIFY echo) is ignored
        await asyncio.wait_for(consumer, 5)
        return received

    received = asyncio.run(scenario())
    assert [(e.id, e.event) for e in received] == [("1", "stage_started"), ("2", "stage_finished"), ("3", "succeeded")]
