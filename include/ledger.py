"""The token ledger: the only code that moves tokens.

Append-only: every grant, purchase, charge and refund is one ``LedgerEntry`` row and a
user's balance is the sum of their rows. Every movement carries an idempotency key derived
from its cause (``charge:{generation_id}:{attempt}``, ``refund:{charge key}``), so Airflow
retries, duplicate requests and crashed-then-restarted processes can repeat any call
safely: the UNIQUE key makes the second insert impossible and the call returns the first
entry instead.

Overdraw checks run in the same transaction as the insert with the user's write lock
held (SQLite: BEGIN IMMEDIATE; Postgres: SELECT ... FOR UPDATE on the user row), so two
concurrent charges cannot both spend the last token.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from include.db import session_scope
from include.models import TERMINAL_STATUSES, Generation, LedgerEntry, User, utcnow

log = logging.getLogger(__name__)

TOKENS_PER_GENERATION = 1


class LedgerError(Exception):
    """A ledger call that cannot be carried out (unknown user or generation, bad amount)."""


class InsufficientTokens(LedgerError):
    """The user has no token left to pay for a generation."""


def charge_key(generation_id: str, attempt: int = 1) -> str:
    return f"charge:{generation_id}:{attempt}"


def refund_key(charge_idempotency_key: str) -> str:
    return f"refund:{charge_idempotency_key}"


def purchase_key(checkout_session_id: str) -> str:
    """One Stripe Checkout Session pays for one credit, whichever webhook event reports it."""
    return f"purchase:stripe:{checkout_session_id}"


def _sum_for_user(session: Session, user_id: int) -> int:
    total = session.exec(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.user_id == user_id)).one()
    return int(total)


def lock_user(session: Session, user_id: int) -> User:
    """Hold the user's ledger lock for the rest of ``session``'s transaction."""
    # On SQLite the whole database is already write-locked (BEGIN IMMEDIATE) and
    # FOR UPDATE is not rendered; on Postgres this row lock serialises one user's movements.
    user = session.exec(select(User).where(User.id == user_id).with_for_update()).first()
    if user is None:
        raise LedgerError(f"unknown user {user_id}")
    return user


def _entry_by_key(session: Session, key: str) -> LedgerEntry | None:
    return session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == key)).first()


def _existing_after_conflict(key: str) -> LedgerEntry:
    # Another process inserted the same key between our check and our insert (possible on
    # Postgres, where we lock only the user row): its entry is the answer.
    with session_scope() as session:
        entry = _entry_by_key(session, key)
    if entry is None:  # the conflict was on another unique column: a real error
        raise LedgerError(f"ledger entry {key!r} conflicted but does not exist")
    return entry


def balance(user_id: int, session: Session | None = None) -> int:
    """The user's current token balance (sum of all their entries)."""
    if session is not None:
        return _sum_for_user(session, user_id)
    with session_scope() as own_session:
        return _sum_for_user(own_session, user_id)


def grant(user_id: int, amount: int, key: str, reason: str = "grant") -> LedgerEntry:
    """Add ``amount`` tokens (a grant or a purchase) once per ``key``; repeats return the first entry."""
    if amount <= 0:
        raise LedgerError(f"a {reason} must add tokens, got {amount}")
    if reason not in ("grant", "purchase"):
        raise LedgerError(f"grant() records grants and purchases, not {reason!r}")
    try:
        with session_scope(write_lock=True) as session:
            existing = _entry_by_key(session, key)
            if existing is not None:
                return existing
            lock_user(session, user_id)
            entry = LedgerEntry(user_id=user_id, amount=amount, reason=reason, idempotency_key=key)
            session.add(entry)
            session.flush()
            return entry
    except IntegrityError:
        return _existing_after_conflict(key)


def credit_purchase(user_id: int, tokens: int, checkout_session_id: str) -> LedgerEntry:
    """Credit a paid token pack, once per Checkout Session (duplicate or reordered webhooks change nothing)."""
    return grant(user_id, tokens, key=purchase_key(checkout_session_id), reason="purchase")


def _insufficient(available: int) -> InsufficientTokens:
    return InsufficientTokens(f"No tokens left: a buddy costs {TOKENS_PER_GENERATION} token and the balance is {available}.")


def operator_grant_key(generation_id: str) -> str:
    """The token an operator granted for one generation started from Airflow's trigger form."""
    return f"operator-grant:{generation_id}"


def create_paid_generation(generation: Generation, operator_grant: bool = False) -> Generation:
    """Store a new generation and take its token (attempt 1) in one transaction.

    The balance check, the generation row and the charge commit together under the user's
    write lock, so concurrent submissions cannot spend the same token: the one that finds the
    balance empty raises ``InsufficientTokens`` and stores nothing. The DAG's charge task calls
    ``charge_generation(gid, 1)`` later and finds this charge. An ``IntegrityError`` (same
    client Idempotency-Key, a concurrent request won) is left to the caller.

    With ``operator_grant`` an operator pays: a grant of the token, keyed
    ``operator-grant:{generation id}`` and linked to the generation, commits with the charge, so
    the user's balance is never touched (a failed generation's refund then leaves them the
    granted token, as any refund does).
    """
    with session_scope(write_lock=True) as session:
        lock_user(session, generation.user_id)
        available = _sum_for_user(session, generation.user_id)
        if available < TOKENS_PER_GENERATION and not operator_grant:
            raise _insufficient(available)
        session.add(generation)
        session.flush()
        if operator_grant:
            session.add(
                LedgerEntry(
                    user_id=generation.user_id,
                    amount=TOKENS_PER_GENERATION,
                    reason="grant",
                    idempotency_key=operator_grant_key(generation.id),
                    generation_id=generation.id,
                )
            )
        session.add(
            LedgerEntry(
                user_id=generation.user_id,
                amount=-TOKENS_PER_GENERATION,
                reason="charge",
                idempotency_key=charge_key(generation.id, 1),
                generation_id=generation.id,
            )
        )
        return generation


def charge_generation(generation_id: str, attempt: int = 1) -> LedgerEntry:
    """Take one token for a generation, exactly once per (generation, attempt).

    Raises ``InsufficientTokens`` when the owner's balance cannot pay. A repeat with the
    same attempt returns the first charge, even if the balance is zero by then.
    """
    key = charge_key(generation_id, attempt)
    try:
        with session_scope(write_lock=True) as session:
            existing = _entry_by_key(session, key)
            if existing is not None:
                return existing
            generation = session.get(Generation, generation_id)
            if generation is None:
                raise LedgerError(f"unknown generation {generation_id}")
            lock_user(session, generation.user_id)
            available = _sum_for_user(session, generation.user_id)
            if available < TOKENS_PER_GENERATION:
                raise _insufficient(available)
            entry = LedgerEntry(
                user_id=generation.user_id,
                amount=-TOKENS_PER_GENERATION,
                reason="charge",
                idempotency_key=key,
                generation_id=generation_id,
            )
            session.add(entry)
            session.flush()
            log.info("charged generation %s (attempt %s): entry %s", generation_id, attempt, entry.id)
            return entry
    except IntegrityError:
        return _existing_after_conflict(key)


def refund_charges(session: Session, generation: Generation) -> LedgerEntry | None:
    """Refund every charge of ``generation`` that has no refund yet, in the caller's transaction.

    The caller holds the owner's lock (``lock_user``). Each refund is exactly the charge's
    amount, keyed ``refund:{charge key}`` and linked to the charge through ``refund_of``
    (UNIQUE), so no charge is ever refunded twice. Marks the generation
    ``refund_state="refunded"``. Returns the (last) refund made, or None when there was nothing
    left to refund (never charged, already refunded, or the generation succeeded: a delivered
    buddy is never refunded, so "refunded" always means "did not succeed").
    """
    if generation.status == "succeeded":
        log.warning("generation %s succeeded; not refunding it", generation.id)
        return None
    charges = session.exec(
        select(LedgerEntry)
        .where(LedgerEntry.generation_id == generation.id, LedgerEntry.reason == "charge")
        .order_by(LedgerEntry.id)
    ).all()
    refunded_charge_ids = set(
        session.exec(select(LedgerEntry.refund_of).where(LedgerEntry.refund_of.in_([c.id for c in charges]))).all()
    )
    made: LedgerEntry | None = None
    for charge in charges:
        if charge.id in refunded_charge_ids:
            continue
        made = LedgerEntry(
            user_id=charge.user_id,
            amount=-charge.amount,
            reason="refund",
            idempotency_key=refund_key(charge.idempotency_key),
            generation_id=generation.id,
            refund_of=charge.id,
        )
        session.add(made)
        session.flush()
        log.info("refunded charge %s of generation %s: entry %s", charge.id, generation.id, made.id)
    if charges and generation.refund_state != "refunded":
        generation.refund_state = "refunded"
        generation.updated_at = utcnow()
        session.add(generation)
    return made


def refund_generation(generation_id: str) -> LedgerEntry | None:
    """Refund the generation's unrefunded charges in a transaction of its own (``refund_charges``).

    A failed generation is settled by ``include.settlement``, which also ends it; this is the
    ledger movement alone.
    """
    try:
        with session_scope(write_lock=True) as session:
            generation = session.get(Generation, generation_id)
            if generation is None:
                raise LedgerError(f"unknown generation {generation_id}")
            lock_user(session, generation.user_id)
            return refund_charges(session, generation)
    except IntegrityError:
        # A concurrent refund of the same charge won the race on Postgres: nothing left to do
        # here, but make sure the state says so.
        log.info("concurrent refund of generation %s; keeping the other one", generation_id)
        with session_scope() as session:
            generation = session.get(Generation, generation_id)
            if generation is not None and generation.refund_state != "refunded":
                generation.refund_state = "refunded"
                session.add(generation)
        return None


def unsettled_generations(stuck_before: datetime) -> list[str]:
    """Generations the reconciliation must settle, oldest first.

    Failed ones with a charge that has no refund, and unfinished ones created before
    ``stuck_before`` (stuck: their run died or never started; refunded or not).
    """
    with session_scope() as session:
        refunded = select(LedgerEntry.refund_of).where(LedgerEntry.refund_of.is_not(None))
        failed_unrefunded = select(LedgerEntry.generation_id).where(
            LedgerEntry.reason == "charge", LedgerEntry.id.not_in(refunded)
        )
        rows = session.exec(
            select(Generation.id)
            .where(
                ((Generation.status == "failed") & Generation.id.in_(failed_unrefunded))
                | (Generation.status.not_in(TERMINAL_STATUSES) & (Generation.created_at < stuck_before))
            )
            .order_by(Generation.created_at)
        ).all()
    return list(rows)
