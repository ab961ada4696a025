"""The application's tables and their public shapes: users, generations, the token ledger.

One model family per resource (full-stack-fastapi-template style): a ``...Base`` with the
shared fields, the ``table=True`` model stored in the application DB, and a ``...Public``
model the API returns. Timestamps are timezone-aware UTC, also when read back from SQLite.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel

GENERATION_STATUSES = ("queued", "running", "succeeded", "failed")
TERMINAL_STATUSES = frozenset({"succeeded", "failed"})
REFUND_STATES = ("none", "refunded")
LEDGER_REASONS = ("grant", "charge", "refund", "purchase")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_generation_id() -> str:
    # Doubles as the Airflow dag_run_id, which makes triggering idempotent.
    return uuid.uuid4().hex


def new_slug() -> str:
    # 48 random bits, 8 url-safe characters: short enough for a QR code, unguessable enough
    # that share pages cannot be enumerated.
    return secrets.token_urlsafe(6)


class UTCDateTime(TypeDecorator):
    """A DateTime that always comes back timezone-aware (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# --- users -------------------------------------------------------------------------------


class UserBase(SQLModel):
    email: str = Field(max_length=320, unique=True, index=True)


class User(UserBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # sha256 hex of the API key; the key itself is shown once and never stored.
    api_key_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserPublic(UserBase):
    id: int
    balance: int


# --- generations -------------------------------------------------------------------------


class GenerationBase(SQLModel):
    prompt: str = Field(max_length=500)


class Generation(GenerationBase, table=True):
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_generation_user_idempotency_key"),)

    id: str = Field(default_factory=new_generation_id, primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="user.id", index=True)
    status: str = Field(default="queued", max_length=16, index=True)
    stage: str | None = Field(default=None, max_length=64)
    error: str | None = None  # user-facing message
    failed_task: str | None = Field(default=None, max_length=250)
    refund_state: str = Field(default="none", max_length=16)
    upload_path: str = Field(max_length=500)  # storage key of the photo
    # asset kind ("webm", "webp", "gif", "poster") -> storage key
    assets: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    slug: str = Field(default_factory=new_slug, unique=True, index=True, max_length=32)
    idempotency_key: str | None = Field(default=None, max_length=255)
    triggered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class GenerationAssets(SQLModel):
    """Absolute download URLs; present once the generation succeeded."""

    webm: str | None = None
    webp: str | None = None
    gif: str | None = None
    poster: str | None = None


class GenerationPublic(GenerationBase):
    id: str
    status: str
    stage: str | None
    error: str | None
    refund_state: str
    created_at: datetime
    finished_at: datetime | None
    assets: GenerationAssets
    share_url: str | None


class GenerationsPublic(SQLModel):
    data: list[GenerationPublic]
    count: int


# --- token ledger ------------------------------------------------------------------------


class LedgerEntry(SQLModel, table=True):
    """One append-only movement of tokens; a user's balance is the sum of their entries."""

    __tablename__ = "ledger_entry"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    amount: int  # + grant / purchase / refund, - charge
    reason: str = Field(max_length=16)
    # Every movement has a key derived from what caused it; UNIQUE makes retries harmless.
    idempotency_key: str = Field(max_length=255, unique=True)
    generation_id: str | None = Field(default=None, foreign_key="generation.id", index=True)
    # The charge this refund compensates. UNIQUE: a charge can be refunded at most once.
    refund_of: int | None = Field(default=None, foreign_key="ledger_entry.id", unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
