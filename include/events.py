"""Generation progress events: the store, the fan-out to live subscribers, and the publisher.

- **Store.** Every event is a ``GenerationEvent`` row in the app DB with ``seq`` counting from 1
  per generation: the Server-Sent Events ``id:``. A client that reconnects with
  ``Last-Event-ID: n`` gets every event after ``n`` from here, then the live ones. Each event has a
  ``key`` naming its cause (``stage_started:animate:1``, ``terminal``, ...), UNIQUE per
  generation, so a publisher that retries after a lost answer stores nothing twice, and a
  generation has at most one terminal event.
- **Fan-out.** An API process keeps one :class:`EventBus`; each SSE response subscribes to its
  generation. ``events_backend = "local"`` (the embedded default, one API process) delivers in
  process. ``"postgres"`` adds ``pg_notify`` in the same transaction as the insert and a LISTEN
  connection in every API process, so an event stored by one process reaches the subscribers of
  all. Subscribers de-duplicate by ``seq`` and fill any gap from the store, so a lost
  notification only delays an event until the next heartbeat.
- **Publisher.** Pipeline tasks (workers, the triggerer; maybe on other machines) post events to
  the API's internal endpoint with :func:`publish` / :func:`apublish`: a short, bounded number of
  quick attempts, every error swallowed and logged. Progress must never fail or slow a generation.
- **Estimates.** Stage events carry ``percent`` and ``eta_seconds`` from the median duration of
  each stage over recent generations (``stage_finished`` events carry their stage's duration).

No Airflow imports here: the callbacks in ``plugins/bitbuddies_airflow/reporting.py`` call in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from include.db import get_engine, session_scope
from include.generations import STAGES
from include.models import TERMINAL_STATUSES, Generation, GenerationEvent, utcnow
from include.settings import get_settings
from include.user_messages import presentable

log = logging.getLogger(__name__)

# What a stream carries. "succeeded" and "failed" end it.
EVENT_TYPES = (
    "stage_started",  # a stage's task started (data: stage, task, try_number)
    "stage_finished",  # ... and finished (data: duration_seconds)
    "queue_position",  # the model provider reports where the job waits (data: position)
    "retry",  # a stage failed and will be tried again (data: error)
    "refund",  # the token went back to the user (data: refunded)
    "succeeded",  # terminal: the buddy is published
    "failed",  # terminal: the generation failed for good (data: error, refunded)
)
TERMINAL_TYPES = frozenset({"succeeded", "failed"})
PROGRESS_TYPES = frozenset({"stage_started", "stage_finished", "queue_position"})
TERMINAL_KEY = "terminal"
NOTIFY_CHANNEL = "bitbuddies_events"
# Postgres caps a NOTIFY payload at 8000 bytes; bigger events are announced by number only.
NOTIFY_MAX_BYTES = 7000
HEARTBEAT = b": keep-alive\n\n"
# A stream's first bytes, sent once its history is read: the SSE reconnection delay, which also
# tells a client that it is subscribed (the history follows; live events after it).
STREAM_OPENING = b"retry: 2000\n\n"
# Threads for the streams' store reads (see in_stream_pool).
STREAM_IO_THREADS = 4
T = TypeVar("T")
# How many recent stage durations the estimate looks at, and how long a process reuses it.
ESTIMATE_WINDOW = 400
ESTIMATE_CACHE_SECONDS = 30.0
# Publishing: quick attempts inside a small total budget, so a down API costs a task ~2 s at most.
PUBLISH_ATTEMPTS = 3
PUBLISH_TIMEOUT_SECONDS = 0.5
PUBLISH_BUDGET_SECONDS = 2.0


@dataclass(frozen=True)
class Event:
    generation_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def payload(self) -> dict[str, Any]:
        """What ``data:`` carries: the event's own fields plus where and when."""
        return {**self.data, "generation_id": self.generation_id, "seq": self.seq, "at": self.created_at.isoformat()}

    def sse(self) -> bytes:
        return f"id: {self.seq}\nevent: {self.type}\ndata: {json.dumps(self.payload(), separators=(',', ':'))}\n\n".encode()

    def to_json(self) -> str:
        return json.dumps(
            {"generation_id": self.generation_id, "seq": self.seq, "type": self.type, "data": self.data, "at": self.created_at.isoformat()},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Event:
        raw = json.loads(text)
        return cls(raw["generation_id"], raw["seq"], raw["type"], raw["data"], datetime.fromisoformat(raw["at"]))

    @classmethod
    def from_row(cls, row: GenerationEvent) -> Event:
        return cls(row.generation_id, row.seq, row.type, dict(row.data or {}), row.created_at)


class UnknownGeneration(LookupError):
    pass


# --- store --------------------------------------------------------------------------------


def record(generation_id: str, type: str, data: dict[str, Any] | None = None, key: str | None = None) -> Event:
    """Store an event with the generation's next ``seq``; a repeated ``key`` returns the stored one."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; expected one of {EVENT_TYPES}")
    data = dict(data or {})
    if data.get("error") is not None:
        # Subscribers are users: only a sentence written for them goes out (include/user_messages.py).
        data["error"] = presentable(str(data["error"]))
    key = key or f"{type}:{time.time_ns()}"
    if type in TERMINAL_TYPES:
        key = TERMINAL_KEY
    for _ in range(20):
        try:
            return _insert(generation_id, type, data, key)
        except IntegrityError:
            existing = _by_key(generation_id, key)
            if existing is not None:
                return existing
            # Another publisher took this seq first (Postgres); the next try reads the new maximum.
    raise RuntimeError(f"could not store event {key!r} of {generation_id}: seq contention")


def _insert(generation_id: str, type: str, data: dict[str, Any], key: str) -> Event:
    with session_scope(write_lock=True) as session:
        if session.get(Generation, generation_id) is None:
            raise UnknownGeneration(f"no generation {generation_id}")
        existing = session.exec(
            select(GenerationEvent).where(GenerationEvent.generation_id == generation_id, GenerationEvent.key == key)
        ).first()
        if existing is not None:
            return Event.from_row(existing)
        seq = _last_seq(session, generation_id) + 1
        if type in PROGRESS_TYPES:
            data.update(_estimate(session, generation_id, data.get("stage"), type))
        row = GenerationEvent(generation_id=generation_id, seq=seq, type=type, key=key, data=data, created_at=utcnow())
        session.add(row)
        session.flush()
        event = Event.from_row(row)
        if get_settings().events_backend == "postgres":
            # Sent by Postgres when (and only if) this transaction commits.
            text = event.to_json()
            if len(text.encode()) > NOTIFY_MAX_BYTES:
                text = json.dumps({"generation_id": generation_id, "seq": seq})
            session.execute(sa_select(func.pg_notify(NOTIFY_CHANNEL, text)))
        return event


def _last_seq(session: Session, generation_id: str) -> int:
    return int(
        session.exec(
            select(func.coalesce(func.max(GenerationEvent.seq), 0)).where(GenerationEvent.generation_id == generation_id)
        ).one()
    )


def _by_key(generation_id: str, key: str) -> Event | None:
    with session_scope() as session:
        row = session.exec(
            select(GenerationEvent).where(GenerationEvent.generation_id == generation_id, GenerationEvent.key == key)
        ).first()
    return Event.from_row(row) if row else None


def history(generation_id: str, after_seq: int = 0) -> list[Event]:
    """The generation's events after ``after_seq``, in order."""
    with session_scope() as session:
        rows = session.exec(
            select(GenerationEvent)
            .where(GenerationEvent.generation_id == generation_id, GenerationEvent.seq > after_seq)
            .order_by(GenerationEvent.seq)
        ).all()
    return [Event.from_row(row) for row in rows]


def ensure_terminal_event(generation_id: str) -> Event | None:
    """The terminal event of a finished generation, stored now if the pipeline's was lost.

    Callbacks run at most once, so a stream must not rely on the pipeline's terminal event alone:
    the generation's row is the truth. ``None`` while the generation is still in progress.
    """
    with session_scope() as session:
        generation = session.get(Generation, generation_id)
    if generation is None or generation.status not in TERMINAL_STATUSES:
        return None
    return record(generation_id, generation.status, terminal_data(generation))


def terminal_data(generation: Generation) -> dict[str, Any]:
    if generation.status == "succeeded":
        return {"status": "succeeded", "percent": 100, "eta_seconds": 0}
    return {
        "status": "failed",
        "error": generation.error,
        "failed_task": generation.failed_task,
        "refunded": generation.refund_state == "refunded",
    }


# --- estimates ----------------------------------------------------------------------------


def stage_of(task_id: str | None) -> str | None:
    """The progress stage a task belongs to ("charge_token" -> "charge"), or None."""
    if not task_id:
        return None
    return next((name for name in STAGES if task_id == name or task_id.startswith(name + "_")), None)


_median_cache: dict[str, Any] = {"at": 0.0, "medians": {}}
_median_lock = threading.Lock()


def stage_medians(session: Session | None = None) -> dict[str, float]:
    """Median seconds per stage over the most recent ``stage_finished`` events (cached briefly)."""
    with _median_lock:
        if time.monotonic() - _median_cache["at"] < ESTIMATE_CACHE_SECONDS:
            return _median_cache["medians"]
    query = (
        select(GenerationEvent.data)
        .where(GenerationEvent.type == "stage_finished")
        .order_by(col(GenerationEvent.id).desc())
        .limit(ESTIMATE_WINDOW)
    )
    if session is None:
        with session_scope() as own:
            rows = own.exec(query).all()
    else:
        rows = session.exec(query).all()
    durations: dict[str, list[float]] = defaultdict(list)
    for data in rows:
        if data and data.get("stage") and isinstance(data.get("duration_seconds"), (int, float)):
            durations[data["stage"]].append(float(data["duration_seconds"]))
    medians = {stage: statistics.median(values) for stage, values in durations.items()}
    with _median_lock:
        _median_cache.update(at=time.monotonic(), medians=medians)
    return medians


def reset_estimates() -> None:
    with _median_lock:
        _median_cache.update(at=0.0, medians={})


def estimate(medians: dict[str, float], finished: Iterable[str], current: str | None, elapsed: float) -> dict[str, Any]:
    """``percent`` done and ``eta_seconds`` left, from stage medians.

    Stages with no history count as the median of the known ones; ``expand_full_body`` counts
    only once it started (most subjects do not need it). Without any history the percent is by
    stage count and the estimate is unknown (``None``).
    """
    finished = set(finished)
    plan = [s for s in STAGES if s != "expand_full_body" or s in finished or s == current]
    if not medians:
        done = len([s for s in plan if s in finished])
        return {"percent": int(100 * done / len(plan)), "eta_seconds": None}
    typical = statistics.median(medians.values())
    cost = {s: medians.get(s, typical) for s in plan}
    spent = sum(cost[s] for s in plan if s in finished)
    remaining = sum(cost[s] for s in plan if s not in finished and s != current)
    if current is not None and current not in finished:
        in_stage = min(elapsed, cost[current])
        spent += in_stage
        remaining += max(cost[current] - elapsed, 0.0)
    total = spent + remaining
    percent = int(100 * spent / total) if total > 0 else 0
    return {"percent": min(percent, 99), "eta_seconds": round(remaining, 1)}


def _estimate(session: Session, generation_id: str, stage: str | None, type: str) -> dict[str, Any]:
    rows = session.exec(
        select(GenerationEvent).where(
            GenerationEvent.generation_id == generation_id, col(GenerationEvent.type).in_(["stage_started", "stage_finished"])
        )
    ).all()
    finished = {r.data.get("stage") for r in rows if r.type == "stage_finished"}
    if type == "stage_finished" and stage:
        finished.add(stage)
    current, elapsed = None, 0.0
    if type != "stage_finished" and stage:
        current = stage
        starts = [r.created_at for r in rows if r.type == "stage_started" and r.data.get("stage") == stage]
        if starts:
            elapsed = (utcnow() - max(starts)).total_seconds()
    return estimate(stage_medians(session), finished, current, elapsed)


# --- fan-out in an API process ------------------------------------------------------------


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

    def deliver(self, event: Event) -> None:
        # Must run on the event loop thread (asyncio.Queue is not thread-safe).
        for sub in self._subscribers.get(event.generation_id, ()):
            sub.queue.put_nowait(event)

    async def published(self, event: Event) -> None:
        """An event this process just stored: hand it to local subscribers."""
        self.deliver(event)


class PostgresEventBus(EventBus):
    """LISTENs on the app DB so that events stored by any API process reach local subscribers.

    The notification itself is sent by :func:`record` inside the insert's transaction. One
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

    async def published(self, event: Event) -> None:
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
                    cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
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
                    self.deliver(Event.from_json(note.payload))
                else:  # too big to carry: let the subscribers read it from the store
                    asyncio.create_task(self._deliver_stored(raw["generation_id"], raw["seq"]))
            except Exception:  # noqa: BLE001 - one bad payload must not stop the listener
                log.exception("events: bad notification %r", note.payload[:200])

    async def _deliver_stored(self, generation_id: str, seq: int) -> None:
        for event in await asyncio.to_thread(history, generation_id, seq - 1):
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


def catch_up(generation_id: str, after_seq: int = 0) -> tuple[list[Event], bool]:
    """What a subscriber that has everything up to ``after_seq`` is missing, and whether its stream
    ends after it: the stored events after ``after_seq``, then, once the generation has finished,
    its terminal event (stored now if the pipeline's was lost)."""
    backlog = history(generation_id, after_seq)
    if any(e.terminal for e in backlog):
        return backlog, True
    terminal = ensure_terminal_event(generation_id)
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


# --- SSE parsing (clients: the CLI, tests, benchmarks) ------------------------------------


@dataclass
class ReceivedEvent:
    id: str | None
    event: str
    data: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[ReceivedEvent]:
    """Events from the lines of a ``text/event-stream`` body (comments skipped)."""
    event_id, event_type, data = None, "message", []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield ReceivedEvent(event_id, event_type, "\n".join(data))
            event_type, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value
        elif name == "event":
            event_type = value
        elif name == "data":
            data.append(value)


# --- publishing from the pipeline ---------------------------------------------------------


def _publish_request(generation_id: str, type: str, data: dict[str, Any] | None, key: str | None) -> tuple[str, dict, dict]:
    settings = get_settings()
    url = f"{settings.resolved_events_publish_url}/internal/generations/{generation_id}/events"
    headers = {"Authorization": f"Bearer {settings.resolved_internal_token}"}
    return url, headers, {"type": type, "data": data or {}, "key": key}


def publish(generation_id: str, type: str, data: dict[str, Any] | None = None, key: str | None = None) -> bool:
    """Post an event to the API; True when stored. Never raises, gives up within ~2 s."""
    deadline = time.monotonic() + PUBLISH_BUDGET_SECONDS
    try:
        url, headers, body = _publish_request(generation_id, type, data, key)
        with httpx.Client(timeout=PUBLISH_TIMEOUT_SECONDS) as http:
            for attempt in range(PUBLISH_ATTEMPTS):
                try:
                    response = http.post(url, json=body, headers=headers)
                    if response.status_code < 300:
                        return True
                    if response.status_code < 500:  # refused: retrying cannot help
                        log.warning("event %s of %s refused: %s %s", type, generation_id, response.status_code, response.text[:200])
                        return False
                except httpx.HTTPError as exc:
                    log.info("event %s of %s: attempt %d failed: %s", type, generation_id, attempt + 1, exc)
                pause = 0.1 * 2**attempt
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
    except Exception:  # noqa: BLE001 - progress must never fail the pipeline
        log.exception("could not publish event %s of %s", type, generation_id)
    log.warning("event %s of %s not published", type, generation_id)
    return False


async def apublish(generation_id: str, type: str, data: dict[str, Any] | None = None, key: str | None = None) -> bool:
    """:func:`publish` for async code (the triggerer)."""
    deadline = time.monotonic() + PUBLISH_BUDGET_SECONDS
    try:
        url, headers, body = _publish_request(generation_id, type, data, key)
        async with httpx.AsyncClient(timeout=PUBLISH_TIMEOUT_SECONDS) as http:
            for attempt in range(PUBLISH_ATTEMPTS):
                try:
                    response = await http.post(url, json=body, headers=headers)
                    if response.status_code < 300:
                        return True
                    if response.status_code < 500:
                        log.warning("event %s of %s refused: %s", type, generation_id, response.status_code)
                        return False
                except httpx.HTTPError as exc:
                    log.info("event %s of %s: attempt %d failed: %s", type, generation_id, attempt + 1, exc)
                pause = 0.1 * 2**attempt
                if time.monotonic() + pause >= deadline:
                    break
                await asyncio.sleep(pause)
    except Exception:  # noqa: BLE001
        log.exception("could not publish event %s of %s", type, generation_id)
    return False
