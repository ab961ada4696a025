"""Per-user limits: how much one account may ask of the platform at once or per period.

- generations in flight (queued or running), counted in the app DB: the truth, across processes;
- uploads per minute, every attempt counted (a rejected photo costs decoding too);
- concurrent Server-Sent Events streams;
- sticker orders per day.

Rates and the stream count live in the ``limits`` library's storage: this process's memory in the
embedded default, Redis in production (``limits_storage_url``) so every API process shares them.
Over a limit the caller gets ``LimitExceeded`` (the API answers 429 with ``Retry-After``).
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import func
from sqlmodel import Session, col, select

from include.models import TERMINAL_STATUSES, Generation
from include.settings import get_settings

# An open stream's slot is forgotten this long after its last acquisition, so a process killed
# with streams open cannot lock a user out for good.
STREAM_SLOT_TTL_SECONDS = 6 * 3600
# Retry-After for a limit on things in flight: nothing expires, something has to finish.
IN_FLIGHT_RETRY_AFTER_SECONDS = 30


class LimitExceeded(Exception):
    """Over a per-user limit; ``str()`` is the message for the user."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


@lru_cache
def _storage() -> Storage:
    settings = get_settings()
    if not settings.limits_storage_url:
        return storage_from_string("memory://")
    return storage_from_string(settings.limits_storage_url, key_prefix=settings.limits_key_prefix)


def reset() -> None:
    """Forget the counters' storage (after the settings changed, e.g. in tests)."""
    _storage.cache_clear()


def _limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(_storage())


def _hit(item, user_id: int, what: str, message: str) -> None:
    limiter = _limiter()
    if not limiter.hit(item, what, str(user_id)):
        reset_at, _ = limiter.get_window_stats(item, what, str(user_id))
        raise LimitExceeded(message, math.ceil(reset_at - time.time()))


def count_upload(user_id: int) -> None:
    """Count one upload attempt (before it is validated); raise when over the per-minute limit."""
    per_minute = get_settings().limit_uploads_per_minute
    _hit(RateLimitItemPerMinute(per_minute), user_id, "uploads", f"Too many uploads: at most {per_minute} a minute.")


def count_sticker_order(user_id: int) -> None:
    per_day = get_settings().limit_sticker_orders_per_day
    _hit(RateLimitItemPerDay(per_day), user_id, "sticker-orders", f"Too many sticker orders: at most {per_day} a day.")


def check_generations_in_flight(session: Session, user_id: int) -> None:
    limit = get_settings().limit_generations_in_flight
    running = session.exec(
        select(func.count())
        .select_from(Generation)
        .where(Generation.user_id == user_id, col(Generation.status).not_in(TERMINAL_STATUSES))
    ).one()
    if running >= limit:
        raise LimitExceeded(
            f"You have {running} buddies being made: at most {limit} at once. Try again when one has finished.",
            IN_FLIGHT_RETRY_AFTER_SECONDS,
        )


class StreamSlot:
    """One of a user's concurrent stream slots; ``release()`` gives it back (once, however often called)."""

    def __init__(self, key: str) -> None:
        self._key: str | None = key

    def release(self) -> None:
        if self._key is not None:
            key, self._key = self._key, None
            _storage().incr(key, STREAM_SLOT_TTL_SECONDS, -1)


def take_event_stream_slot(user_id: int) -> StreamSlot:
    """Take one of the user's stream slots for the life of a stream; raise when all are taken."""
    limit = get_settings().limit_event_streams
    key = f"bitbuddies/event-streams/{user_id}"
    slot = StreamSlot(key)
    if _storage().incr(key, STREAM_SLOT_TTL_SECONDS, 1) > limit:
        slot.release()
        raise LimitExceeded(f"Too many open progress streams: at most {limit} at once.", IN_FLIGHT_RETRY_AFTER_SECONDS)
    return slot
