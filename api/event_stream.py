"""Live progress in an API process: the fan-out of stored events to subscribers and the SSE stream.

An API process keeps one :class:`EventBus`; each SSE response (``api/routes/events.py``)
subscribes to its generation. ``events_backend = "local"`` (the embedded default, one API
process) delivers in process. ``"postgres"`` adds a LISTEN connection in every API process (the
store sends ``pg_notify`` in the insert's transaction, ``include/events.py``), so an event stored
by one process reaches the subscribers of all. Subscribers de-duplicate by ``seq`` and fill any
gap from the store, so a lost notification only delays an event until the next heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from include import events
from include.db import get_engine
from include.settings import get_settings

log = logging.getLogger(__name__)

HEARTBEAT = b": keep-alive\n\n"
# A stream's first bytes, sent once its history is read: the SSE reconnection delay, which also
# tells a client that it is subscribed (the history follows; live events after it).
STREAM_OPENING = b"retry: 2000\n\n"
# Threads for the streams' store reads (see in_stream_pool).
STREAM_IO_THREADS = 4
T = TypeVar("T")


@dataclass(eq=False)  # identity: each subscriber is its own
class Subscription:
    generation_id: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class EventBus:
    """Delivers events to this process's subscribers (the ``local`` backend)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def subscribe(self, generation_id: str) -> Subscription:
        sub = Subscription(generation_id)
        self._subscribers[generation_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.generation_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.generation_id]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def deliver(self, event: events.Event) -> None:
        # Must run on the event loop thread (asyncio.Queue is not thread-safe).
        for sub in self._subscribers.get(event.generation_id, ()):
            sub.queue.put_nowait(event)

    async def published(self, event: events.Event) -> None:
        """An event this process just stored: hand it to local subscribers."""
        self.deliver(event)


class PostgresEventBus(EventBus):
    """LISTENs on the app DB so that events stored by any API process reach local subscribers.

    The notification itself is sent by ``include.events.record`` inside the insert's transaction. One
    psycopg2 connection per process, read through the event loop (``add_reader``); it reconnects
    with backoff, and subscribers fill whatever they missed meanwhile from the store.
    """

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._conn = None
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="bitbuddies-events-listen")
        try:
            await asyncio.wait_for(self.connected.wait(), timeout=10)
        except TimeoutError:
            log.error("events: could not LISTEN on Postgres yet; retrying in the background")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._close()

    async def published(self, event: events.Event) -> None:
        # Delivered at once here; the NOTIFY echo is dropped by the subscribers' seq check.
        self.deliver(event)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
        self.connected.clear()

    async def _listen_forever(self) -> None:
        import psycopg2

        failures = 0
        while True:
            try:
                self._conn = await asyncio.to_thread(psycopg2.connect, self._dsn)
                self._conn.autocommit = True
                with self._conn.cursor() as cursor:
                    cursor.execute(f"LISTEN {events.NOTIFY_CHANNEL}")
                lost = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().add_reader(self._conn.fileno(), self._on_readable, lost)
                self.connected.set()
                failures = 0
                await lost
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening for the life of the process
                failures += 1
                log.warning("events: LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self._close()
            await asyncio.sleep(min(5.0, 0.1 * 2**failures))

    def _on_readable(self, lost: asyncio.Future) -> None:
        try:
            self._conn.poll()
        except Exception as exc:  # noqa: BLE001
            if not lost.done():
                lost.set_exception(exc)
            return
        while self._conn.notifies:
            note = self._conn.notifies.pop(0)
            try:
                raw = json.loads(note.payload)
                if "type" in raw:
                    self.deliver(events.Event.from_json(note.payload))
                else:  # too big to carry: let the subscribers read it from the store
                    asyncio.create_task(self._deliver_stored(raw["generation_id"], raw["seq"]))
            except Exception:  # noqa: BLE001 - one bad payload must not stop the listener
                log.exception("events: bad notification %r", note.payload[:200])

    async def _deliver_stored(self, generation_id: str, seq: int) -> None:
        for event in await asyncio.to_thread(events.history, generation_id, seq - 1):
            if event.seq == seq:
                self.deliver(event)


def postgres_dsn(database_url: str) -> str:
    """A libpq DSN from a SQLAlchemy URL (``postgresql+psycopg2://...`` -> ``postgresql://...``)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def create_bus() -> EventBus:
    settings = get_settings()
    if settings.events_backend == "local":
        return EventBus()
    if settings.events_backend == "postgres":
        if get_engine().dialect.name != "postgresql":
            raise ValueError("events_backend 'postgres' needs a Postgres app database (BITBUDDIES_DATABASE_URL)")
        return PostgresEventBus(postgres_dsn(settings.resolved_database_url))
    raise ValueError(f"unknown events_backend {settings.events_backend!r}; expected 'local' or 'postgres'")


def catch_up(generation_id: str, after_seq: int = 0) -> tuple[list[events.Event], bool]:
    """What a subscriber that has everything up to ``after_seq`` is missing, and whether its stream
    ends after it: the stored events after ``after_seq``, then, once the generation has finished,
    its terminal event (stored now if the pipeline's was lost)."""
    backlog = events.history(generation_id, after_seq)
    if any(e.terminal for e in backlog):
        return backlog, True
    terminal = events.ensure_terminal_event(generation_id)
    if terminal is None:
        return backlog, False
    if terminal.seq <= after_seq:
        return [], True  # the client already has the end (it reconnected after it)
    if all(e.seq != terminal.seq for e in backlog):
        backlog.append(terminal)
    return backlog, True


_stream_executor: ThreadPoolExecutor | None = None
_stream_executor_lock = threading.Lock()


async def in_stream_pool(fn: Callable[..., T], *args: Any) -> T:
    """Run a stream's blocking store work on the streams' own small thread pool, so that a crowd
    of subscribers (re)connecting at once cannot queue ahead of API requests on the default one."""
    global _stream_executor
    if _stream_executor is None:
        with _stream_executor_lock:
            if _stream_executor is None:
                _stream_executor = ThreadPoolExecutor(max_workers=STREAM_IO_THREADS, thread_name_prefix="sse-store")
    return await asyncio.get_running_loop().run_in_executor(_stream_executor, fn, *args)


async def stream(bus: EventBus, generation_id: str, after_seq: int = 0, heartbeat_seconds: float | None = None) -> AsyncIterator[bytes]:
    """The SSE body for one subscriber: history after ``after_seq``, then live events, heartbeats
    while idle; ends after the terminal event."""
    heartbeat_seconds = heartbeat_seconds or get_settings().events_heartbeat_seconds
    # Subscribe before reading the store: an event stored in between is then seen at least once.
    sub = bus.subscribe(generation_id)
    last = after_seq
    try:
        backlog, ended = await in_stream_pool(catch_up, generation_id, last)
        yield STREAM_OPENING
        while True:
            for event in backlog:
                yield event.sse()
                last = event.seq
                if event.terminal:
                    return
            if ended:
                return
            try:
                event = await asyncio.wait_for(sub.queue.get(), heartbeat_seconds)
            except TimeoutError:
                # Idle: catch up on anything a lost notification or a lost callback left out.
                backlog, ended = await in_stream_pool(catch_up, generation_id, last)
                if not backlog and not ended:
                    yield HEARTBEAT
                continue
            if event.seq <= last:
                backlog, ended = [], False  # already sent (history, or a NOTIFY echo)
            elif event.seq == last + 1:
                backlog, ended = [event], False
            else:  # a gap: fill it from the store
                backlog, ended = await in_stream_pool(catch_up, generation_id, last)
    finally:
        bus.unsubscribe(sub)
