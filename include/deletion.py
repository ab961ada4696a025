"""Deleting a buddy, or a whole user, at its owner's request.

``delete_generation(user_id, generation_id)`` (``DELETE /api/generations/{id}``, the web app's
delete button) and ``delete_user(user_id)`` (``DELETE /api/me``, ``bitbuddies user delete EMAIL``)
remove the photo, the model provider's intermediates and the published assets; the share page,
its assets, the widget and every sticker's QR code then answer 404/410.

Money stays auditable: a generation's row remains as a tombstone (status, refund state and
timestamps only: no prompt, error, photo or assets) because the ledger's charge and refund rows
point at it, and a deleted user's row remains anonymised (no email, no usable key) because
their ledger rows do. ``bitbuddies ledger audit`` therefore still adds up after any deletion.

Refused (``DeletionRefused``, a message for the user) while work or money is in flight: a buddy
still being made, or one on a sticker order that has not shipped or been refunded yet.

The database change commits first; the files go after it. If removing them fails halfway (the
model server is down) the row says so (``files_purged_at`` unset) and the retention DAG
finishes the job on its next run.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from sqlalchemy import delete as sql_delete
from sqlmodel import Session, SQLModel, col, select

from include import retention, storage
from include.db import session_scope
from include.models import (
    TERMINAL_STATUSES,
    Generation,
    GenerationEvent,
    StickerOrder,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

# Orders in these states may still print, ship or refund: the buddies on them stay.
ORDERS_IN_FLIGHT = ("paid", "rendering", "rendered", "submitted", "printed", "failed")
# A Checkout Session can be paid for 24 hours after it was opened (Stripe's expiry).
CHECKOUT_OPEN = timedelta(hours=24)
# Tables whose rows the user's ledger and generations do not need: every other table with a
# user_id (API keys, web sessions, ...) loses the user's rows outright.
_KEPT_USER_TABLES = frozenset({"ledger_entry", "generation", "sticker_order", "alert", "user"})


class DeletionRefused(Exception):
    """The deletion cannot happen now; the message says why, for the user."""


class NotFound(LookupError):
    """No such generation or user (or not the caller's)."""


def delete_generation(user_id: int, generation_id: str) -> None:
    """Delete one of ``user_id``'s buddies: tombstone its row, then remove its files.

    Raises ``NotFound`` for a missing, already deleted or someone else's generation and
    ``DeletionRefused`` while it is being made or sits on an order in flight.
    """
    with session_scope(write_lock=True) as session:
        generation = session.get(Generation, generation_id)
        if generation is None or generation.user_id != user_id or generation.deleted_at is not None:
            raise NotFound("Generation not found.")
        _refuse_if_busy(session, user_id, [generation], whole_user=False)
        _tombstone(session, generation)
        _forget_sheets(session, user_id, {generation_id})
    _purge(generation_id)


def delete_user(user_id: int) -> None:
    """Delete a user: every buddy as :func:`delete_generation` does, orders' addresses and sheets,
    their keys and sessions, and their email; the row stays anonymised for the ledger."""
    with session_scope(write_lock=True) as session:
        user = session.get(User, user_id)
        if user is None or user.deleted_at is not None:
            raise NotFound("User not found.")
        generations = list(
            session.exec(select(Generation).where(Generation.user_id == user_id, Generation.deleted_at.is_(None))).all()
        )
        _refuse_if_busy(session, user_id, generations, whole_user=True)
        for generation in generations:
            _tombstone(session, generation)
        _forget_sheets(session, user_id, None)
        for order in session.exec(select(StickerOrder).where(StickerOrder.user_id == user_id)).all():
            order.shipping_address = {}
            order.tracking_number = order.tracking_url = order.carrier = None
            order.checkout_url = None
            order.updated_at = utcnow()
            session.add(order)
        _delete_owned_rows(session, user_id)
        user.email = f"deleted-{user_id}-{secrets.token_hex(4)}@deleted.invalid"
        user.password_hash = None  # its API keys and sessions went with the owned rows
        user.deleted_at = utcnow()
        session.add(user)
        deleted_ids = [g.id for g in generations]
    for generation_id in deleted_ids:
        _purge(generation_id)
    log.info("user %s deleted (%d buddies)", user_id, len(deleted_ids))


def _refuse_if_busy(session: Session, user_id: int, generations: list[Generation], *, whole_user: bool) -> None:
    unfinished = [g for g in generations if g.status not in TERMINAL_STATUSES]
    if unfinished:
        raise DeletionRefused(
            f"{len(unfinished)} of your buddies are still being made; delete once they have finished."
            if whole_user
            else "This buddy is still being made; delete it once it has finished."
        )
    ids = {g.id for g in generations}
    for order in _orders(session, user_id):
        if _in_flight(order) and (whole_user or ids.intersection(order.generation_ids)):
            raise DeletionRefused(
                f"Sticker order {order.id[:8].upper()} is still {order.status.replace('_', ' ')}; "
                "you can delete once it has shipped or been refunded."
            )


def _in_flight(order: StickerOrder) -> bool:
    if order.status in ORDERS_IN_FLIGHT:
        return True
    # An open Checkout Session can still be paid, and a paid order prints.
    return order.status == "pending_payment" and order.checkout_session_id is not None and utcnow() - order.created_at < CHECKOUT_OPEN


def _orders(session: Session, user_id: int) -> list[StickerOrder]:
    return list(session.exec(select(StickerOrder).where(StickerOrder.user_id == user_id)).all())


def _tombstone(session: Session, generation: Generation) -> None:
    now = utcnow()
    generation.deleted_at = now
    generation.files_purged_at = None  # everything must go now, the assets too
    generation.prompt = ""
    generation.share_title = None
    generation.error = None
    generation.assets = {}
    generation.idempotency_key = None  # the same key may make a new buddy
    generation.updated_at = now
    session.add(generation)
    # Progress history carries stage errors and timings of the deleted buddy.
    session.exec(sql_delete(GenerationEvent).where(col(GenerationEvent.generation_id) == generation.id))


def _forget_sheets(session: Session, user_id: int, generation_ids: set[str] | None) -> None:
    """Sheets picture the buddies on them: those of the deleted buddies (all, for a user) go."""
    for order in _orders(session, user_id):
        if generation_ids is not None and not generation_ids.intersection(order.generation_ids):
            continue
        if order.sheet_key or order.home_sheet_key:
            storage.delete_tree(f"orders/{order.id}")
            order.sheet_key = order.home_sheet_key = None
            session.add(order)


def _delete_owned_rows(session: Session, user_id: int) -> None:
    for table in SQLModel.metadata.sorted_tables:
        if table.name in _KEPT_USER_TABLES or "user_id" not in table.c:
            continue
        session.execute(table.delete().where(table.c.user_id == user_id))


def _purge(generation_id: str) -> None:
    try:
        retention.purge_generation_files(generation_id, assets=True)
    except retention.PurgeFailed as error:
        log.warning("generation %s deleted; its model-server copies remain until the retention DAG: %s", generation_id, error)
        return
    retention.mark_purged(generation_id)
