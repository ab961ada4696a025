"""Generation progress events: the store (the API writes and reads it) and the progress estimates.

- **Store.** Every event is a ``GenerationEvent`` row in the app DB with ``seq`` counting from 1
  per generation: the Server-Sent Events ``id:``. A client that reconnects with
  ``Last-Event-ID: n`` gets every event after ``n`` from here, then the live ones. Each event has a
  ``key`` naming its cause (``stage_started:animate:1``, ``terminal``, ...), UNIQUE per
  generation, so a publisher that retries after a lost answer stores nothing twice, and a
  generation has at most one terminal event. With ``events_backend = "postgres"`` the insert's
  transaction also sends ``pg_notify`` so the API processes' buses hear of it.
- **Estimates.** Stage events carry ``percent`` and ``eta_seconds`` from the median duration of
  each stage over recent generations (``stage_finished`` events carry their stage's duration).

The other processes' parts live beside them: the fan-out to live subscribers and the SSE stream
in the API (``api/event_stream.py``), publishing from pipeline tasks (``include/event_publisher.py``),
the SSE client parser next to the CLI (``api/sse.py``). No Airflow imports here.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from include.db import session_scope
from include.stages import OPTIONAL_STAGES, STAGE_NAMES
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
# How many recent stage durations the estimate looks at, and how long a process reuses it.
ESTIMATE_WINDOW = 400
ESTIMATE_CACHE_SECONDS = 30.0


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
    return next((name for name in STAGE_NAMES if task_id == name or task_id.startswith(name + "_")), None)


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

    Stages with no history count as the median of the known ones; the optional stages (``review``,
    ``expand_full_body``) count only once they started (most generations do not need them). Without any history the percent is by
    stage count and the estimate is unknown (``None``).
    """
    finished = set(finished)
    plan = [s for s in STAGE_NAMES if s not in OPTIONAL_STAGES or s in finished or s == current]
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
