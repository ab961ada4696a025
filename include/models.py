"""The application's tables and their public shapes: users, generations, the token ledger.

One model family per resource (full-stack-fastapi-template style): a ``...Base`` with the
shared fields, the ``table=True`` model stored in the application DB, and a ``...Public``
model the API returns. Timestamps are timezone-aware UTC, also when read back from SQLite.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from sqlalchemy import JSON, Column, DateTime, TypeDecorator, UniqueConstraint
from pydantic import AfterValidator, StringConstraints
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
    # argon2id hash (pwdlib) of the web app password; None for users made by an operator
    # (`bitbuddies user create`), who sign in to the API with a key only.
    password_hash: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set when the user deleted their account (include/deletion.py): the row stays, anonymised,
    # because the ledger's money rows point at it; it can no longer sign in.
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UserPublic(UserBase):
    id: int
    balance: int


class ApiKey(SQLModel, table=True):
    """One named API key of a user (several per user); include/accounts.py owns these rows.

    Only the key's sha256 is stored (the key is shown once); ``prefix`` (its first characters)
    lets its owner tell keys apart. A revoked key stays listed with ``revoked_at`` set and is
    refused at once.
    """

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiKeyCreate(SQLModel):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyPublic(SQLModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str  # the key itself: shown in this answer only


class WebSession(SQLModel, table=True):
    """A signed-in browser: the cookie carries a random token, the table only its sha256.

    Signing out deletes the row, so a copied cookie stops working at once.
    """

    __tablename__ = "web_session"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


# --- generations -------------------------------------------------------------------------


class GenerationBase(SQLModel):
    prompt: str = Field(max_length=500)


class Generation(GenerationBase, table=True):
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_generation_user_idempotency_key"),)

    # The motion the person chose (model_server/vision/prompt.py MOTIONS); None: read from the prompt.
    motion: str | None = Field(default=None, max_length=16)

    id: str = Field(default_factory=new_generation_id, primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="user.id", index=True)
    status: str = Field(default="queued", max_length=16, index=True)
    stage: str | None = Field(default=None, max_length=64)
    error: str | None = None  # user-facing message
    failed_task: str | None = Field(default=None, max_length=250)
    refund_state: str = Field(default="none", max_length=16)
    upload_path: str = Field(max_length=500)  # storage key of the photo
    # asset kind ("webm", "webp", "gif", "poster", "walk_webm", "walk_webp") -> storage key; None
    # for a kind still being encoded after the generation was published (generations.pending_formats)
    assets: dict[str, str | None] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    slug: str = Field(default_factory=new_slug, unique=True, index=True, max_length=32)
    idempotency_key: str | None = Field(default=None, max_length=255)
    triggered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # The Airflow run of a generation an operator started from the trigger form; None: the API
    # started it and the run id is the generation id (generations.airflow_run_url).
    airflow_run_id: str | None = Field(default=None, max_length=250)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Shown on the public share page when its owner chose one; the prompt never is.
    share_title: str | None = Field(default=None, max_length=100)
    # Set when its owner deleted it (include/deletion.py): the row stays as a tombstone without
    # prompt, photo or assets, so the ledger's charge and refund rows still add up.
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # When the files this row calls for were removed: the photo and the model provider's
    # intermediates after the retention period, everything once deleted (include/retention.py).
    files_purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class GenerationAssets(SQLModel):
    """Absolute download URLs; present once the generation succeeded."""

    webm: str | None = None
    webp: str | None = None
    gif: str | None = None
    poster: str | None = None
    # The walk loop (faces the page's right; mirror it to walk left); None when absent.
    walk_webm: str | None = None
    walk_webp: str | None = None


class GenerationPublic(GenerationBase):
    id: str
    motion: str | None = None
    status: Literal["queued", "running", "succeeded", "failed"]
    share_title: str | None = None
    stage: str | None
    error: str | None
    refund_state: Literal["none", "refunded"]
    created_at: datetime
    finished_at: datetime | None
    assets: GenerationAssets
    # The asset kinds that can be downloaded now, and those still being encoded: a buddy is
    # published with its WebM and poster, and its WebP, GIF and walk loop follow seconds later.
    formats_ready: list[str] = []
    formats_pending: list[str] = []
    share_url: str | None


class GenerationUpdate(SQLModel):
    """What an owner may change: the title shown on the public share page (null: none)."""

    share_title: str | None = Field(default=None, max_length=100)


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


class StripeEvent(SQLModel, table=True):
    """A Stripe webhook event already handled; its id is the primary key, so a redelivery is a no-op."""

    __tablename__ = "stripe_event"

    id: str = Field(primary_key=True, max_length=255)  # Stripe's evt_... id
    type: str = Field(max_length=100)
    processed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- sticker orders ----------------------------------------------------------------------

# pending_payment -> paid -> rendering -> rendered -> submitted -> printed -> shipped, or
# (after payment) -> failed -> refunded. include/orders.py owns the transitions.
ORDER_STATUSES = ("pending_payment", "paid", "rendering", "rendered", "submitted", "printed", "shipped", "failed", "refunded")
SHEET_SIZES = ("A4", "Letter")


class StickerOrder(SQLModel, table=True):
    __tablename__ = "sticker_order"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_sticker_order_user_idempotency_key"),)

    # Doubles as the sticker DAG's dag_run_id and the print vendor's external id.
    id: str = Field(default_factory=new_generation_id, primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="user.id", index=True)
    status: str = Field(default="pending_payment", max_length=20, index=True)
    generation_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    sheet_size: str = Field(default="A4", max_length=8)
    copies: int = 1
    sheet_count: int = 1
    shipping_address: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    amount_cents: int = 0
    currency: str = Field(default="usd", max_length=3)
    # "stripe", or "dev_autopay" when the development setting marked it paid without payment.
    payment_provider: str | None = Field(default=None, max_length=16)
    checkout_session_id: str | None = Field(default=None, max_length=255, index=True)
    checkout_url: str | None = None
    payment_reference: str | None = Field(default=None, max_length=255)  # e.g. the PaymentIntent id
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    triggered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    sheet_key: str | None = Field(default=None, max_length=500)  # print-shop PDF in storage
    home_sheet_key: str | None = Field(default=None, max_length=500)  # print-at-home PDF
    vendor: str | None = Field(default=None, max_length=32)
    vendor_job_id: str | None = Field(default=None, max_length=255)
    tracking_number: str | None = Field(default=None, max_length=255)
    tracking_url: str | None = None
    carrier: str | None = Field(default=None, max_length=64)
    error: str | None = None  # user-facing
    # What the print vendor said about a failure, for the operator's alert only (never shown to the customer).
    vendor_error: str | None = Field(default=None, max_length=500)
    refund_state: str = Field(default="none", max_length=16)
    refund_reference: str | None = Field(default=None, max_length=255)
    idempotency_key: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class StickerOrderEvent(SQLModel, table=True):
    """The order's timeline: one row per status reached, plus one per vendor webhook event.

    ``dedupe_key`` (UNIQUE per order) makes repeats no-ops: ``status:{status}`` for a transition,
    ``webhook:{delivery}`` for a vendor event however often the vendor delivers it.
    """

    __tablename__ = "sticker_order_event"
    __table_args__ = (UniqueConstraint("order_id", "dedupe_key", name="uq_sticker_order_event_dedupe"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="sticker_order.id", index=True, max_length=32)
    kind: str = Field(max_length=16)  # "status" or "webhook"
    status: str = Field(max_length=20)
    message: str = ""
    dedupe_key: str | None = Field(default=None, max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


def _plain(value: str) -> str:
    from include.user_messages import is_plain_text

    if not is_plain_text(value) or "\n" in value or "\t" in value:
        raise ValueError("must not contain control characters")
    return value


def _country(value: str) -> str:
    import pycountry

    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code, e.g. US or GB")
    return code


def _email(value: str) -> str:
    if not value:
        return value
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ValueError(f"is not a valid email address ({error})") from None


def _phone(value: str) -> str:
    if not value:
        return value
    import phonenumbers

    try:
        number = phonenumbers.parse(value, None if value.startswith("+") else "US")
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


PlainStr = Annotated[str, AfterValidator(_plain)]
GenerationId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class ShippingAddressIn(SQLModel):
    name: PlainStr = Field(min_length=1, max_length=200)
    address1: PlainStr = Field(min_length=1, max_length=200)
    address2: PlainStr = Field(default="", max_length=200)
    city: PlainStr = Field(min_length=1, max_length=100)
    state_code: PlainStr = Field(default="", max_length=10)
    zip: PlainStr = Field(min_length=1, max_length=20)
    country_code: Annotated[str, AfterValidator(_country)] = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")
    email: Annotated[str, AfterValidator(_email)] = Field(default="", max_length=320)
    phone: Annotated[str, AfterValidator(_phone)] = Field(default="", max_length=40)


class StickerOrderCreate(SQLModel):
    generation_ids: list[GenerationId] = Field(min_length=1, max_length=24)
    sheet_size: Literal["A4", "Letter"] = "A4"
    copies: int = Field(default=1, ge=1, le=20)
    shipping_address: ShippingAddressIn


OrderStatus = Literal["pending_payment", "paid", "rendering", "rendered", "submitted", "printed", "shipped", "failed", "refunded"]


class StickerOrderEventPublic(SQLModel):
    status: OrderStatus
    kind: Literal["status", "webhook"]
    message: str
    at: datetime


class StickerOrderTracking(SQLModel):
    carrier: str | None
    number: str
    url: str | None


class StickerOrderPublic(SQLModel):
    id: str
    status: OrderStatus
    generation_ids: list[str]
    sheet_size: str
    copies: int
    sheet_count: int
    amount_cents: int
    currency: str
    checkout_url: str | None
    payment: str | None
    error: str | None
    refund_state: Literal["none", "refunded"]
    tracking: StickerOrderTracking | None
    sheet_url: str | None
    home_sheet_url: str | None
    timeline: list[StickerOrderEventPublic]
    created_at: datetime


# --- generation progress events and operator alerts --------------------------------------


class GenerationEvent(SQLModel, table=True):
    """One progress event of a generation, as served by its Server-Sent Events stream.

    ``seq`` counts from 1 per generation and is the stream's ``id:`` (UNIQUE per generation, so
    two concurrent publishers cannot both take the same number). ``key`` names what caused the
    event (UNIQUE per generation): a publisher retrying after a lost answer stores nothing twice.
    include/events.py owns these rows.
    """

    __tablename__ = "generation_event"
    __table_args__ = (
        UniqueConstraint("generation_id", "seq", name="uq_generation_event_seq"),
        UniqueConstraint("generation_id", "key", name="uq_generation_event_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    generation_id: str = Field(foreign_key="generation.id", index=True, max_length=32)
    seq: int
    type: str = Field(max_length=32, index=True)
    key: str = Field(max_length=200)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class Alert(SQLModel, table=True):
    """An operator alert and how it was delivered (Pushover, or only this table and the log).

    ``key`` (UNIQUE) says what the alert is about, e.g. ``generation_failed:{id}``: however many
    callers report one failure (the DAG's failure callback, the refund task, the reconciliation
    DAG), one alert exists. include/alerts.py owns these rows.
    """

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=32, index=True)
    generation_id: str | None = Field(default=None, max_length=32, index=True)
    user_id: int | None = None
    title: str = Field(max_length=250)
    message: str
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    url: str | None = None
    channel: str = Field(default="log", max_length=16)  # "pushover" or "log"
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivery_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
