"""The token ledger: idempotent by key, never overdrawn, refunds exactly once, under threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from include import ledger
from include.db import session_scope
from include.models import Generation, LedgerEntry
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)


def new_generation(user_id: int) -> str:
    with session_scope() as session:
        generation = Generation(user_id=user_id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(generation)
    return generation.id


def entries(**where) -> list[LedgerEntry]:
    with session_scope() as session:
        query = select(LedgerEntry)
        for column, value in where.items():
            query = query.where(getattr(LedgerEntry, column) == value)
        return list(session.exec(query).all())


def run_in_threads(count: int, fn):
    """Start ``count`` calls of ``fn`` at the same moment; returns results or exceptions."""
    barrier = threading.Barrier(count)

    def call(_):
        barrier.wait()
        try:
            return fn()
        except Exception as exc:  # collected so the test can assert on them
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def test_grant_is_idempotent_by_key(fresh_app_db):
    user, _ = make_user()
    first = ledger.grant(user.id, 5, key="welcome")
    again = ledger.grant(user.id, 5, key="welcome")
    assert again.id == first.id
    assert ledger.balance(user.id) == 5
    ledger.grant(user.id, 2, key="promo", reason="purchase")
    assert ledger.balance(user.id) == 7


def test_grant_refuses_non_positive_amounts(fresh_app_db):
    user, _ = make_user()
    with pytest.raises(ledger.LedgerError):
        ledger.grant(user.id, 0, key="nothing")
    with pytest.raises(ledger.LedgerError):
        ledger.grant(user.id, -3, key="sneaky")
    assert ledger.balance(user.id) == 0


def test_charge_takes_one_token_once_per_attempt(fresh_app_db):
    user, _ = make_user(tokens=2)
    gid = new_generation(user.id)
    first = ledger.charge_generation(gid)
    repeat = ledger.charge_generation(gid)
    assert repeat.id == first.id
    assert first.amount == -1 and first.idempotency_key == f"charge:{gid}:1"
    assert ledger.balance(user.id) == 1
    ledger.charge_generation(gid, attempt=2)
    assert ledger.balance(user.id) == 0


def test_charge_with_zero_balance_raises_a_clear_error(fresh_app_db):
    user, _ = make_user(tokens=0)
    gid = new_generation(user.id)
    with pytest.raises(ledger.InsufficientTokens, match="No tokens left"):
        ledger.charge_generation(gid)
    assert entries(user_id=user.id) == []


def test_repeat_of_a_charge_succeeds_even_after_the_balance_hit_zero(fresh_app_db):
    user, _ = make_user(tokens=1)
    gid = new_generation(user.id)
    first = ledger.charge_generation(gid)
    # A retried charge task must see its own charge, not "insufficient tokens".
    assert ledger.charge_generation(gid).id == first.id


def test_twenty_concurrent_charges_with_the_same_key_make_one_entry(fresh_app_db):
    user, _ = make_user(tokens=5)
    gid = new_generation(user.id)
    results = run_in_threads(20, lambda: ledger.charge_generation(gid))
    assert all(isinstance(r, LedgerEntry) for r in results), results
    assert len({r.id for r in results}) == 1
    assert len(entries(reason="charge")) == 1
    assert ledger.balance(user.id) == 4


def test_concurrent_charges_of_different_generations_never_overdraw(fresh_app_db):
    user, _ = make_user(tokens=3)
    gids = [new_generation(user.id) for _ in range(8)]
    lock = threading.Lock()
    pending = list(gids)

    def charge_next():
        with lock:
            gid = pending.pop()
        return ledger.charge_generation(gid)

    results = run_in_threads(8, charge_next)
    charged = [r for r in results if isinstance(r, LedgerEntry)]
    refused = [r for r in results if isinstance(r, ledger.InsufficientTokens)]
    assert len(charged) == 3 and len(refused) == 5, results
    assert ledger.balance(user.id) == 0


def test_refund_twice_refunds_once_and_never_more_than_the_charge(fresh_app_db):
    user, _ = make_user(tokens=1)
    gid = new_generation(user.id)
    charge = ledger.charge_generation(gid)
    refund = ledger.refund_generation(gid)
    assert refund is not None
    assert refund.amount == -charge.amount == 1
    assert refund.refund_of == charge.id and refund.idempotency_key == f"refund:{charge.idempotency_key}"
    assert ledger.refund_generation(gid) is None
    assert ledger.balance(user.id) == 1
    with session_scope() as session:
        assert session.get(Generation, gid).refund_state == "refunded"


def test_concurrent_refunds_pay_back_exactly_once(fresh_app_db):
    user, _ = make_user(tokens=1)
    gid = new_generation(user.id)
    ledger.charge_generation(gid)
    results = run_in_threads(10, lambda: ledger.refund_generation(gid))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len([r for r in results if isinstance(r, LedgerEntry)]) == 1
    assert len(entries(reason="refund")) == 1
    assert ledger.balance(user.id) == 1


def test_refund_covers_every_unrefunded_charge_of_the_generation(fresh_app_db):
    user, _ = make_user(tokens=3)
    gid = new_generation(user.id)
    ledger.charge_generation(gid, attempt=1)
    ledger.refund_generation(gid)
    ledger.charge_generation(gid, attempt=2)
    ledger.charge_generation(gid, attempt=3)
    assert ledger.balance(user.id) == 1
    ledger.refund_generation(gid)
    assert ledger.balance(user.id) == 3
    assert len(entries(reason="refund")) == 3


def test_refund_without_a_charge_is_nothing(fresh_app_db):
    user, _ = make_user(tokens=1)
    gid = new_generation(user.id)
    assert ledger.refund_generation(gid) is None
    assert ledger.balance(user.id) == 1
    with session_scope() as session:
        assert session.get(Generation, gid).refund_state == "none"


def test_unknown_generation_is_an_error_not_a_charge(fresh_app_db):
    with pytest.raises(ledger.LedgerError):
        ledger.charge_generation("0" * 32)


def test_create_paid_generation_stores_and_charges_together_or_not_at_all(fresh_app_db):
    user, _ = make_user(tokens=1)
    paid = ledger.create_paid_generation(Generation(user_id=user.id, prompt="wave", upload_path="u/1.jpg"))
    assert [e.idempotency_key for e in entries(generation_id=paid.id)] == [ledger.charge_key(paid.id, 1)]
    # The DAG's charge task (attempt 1) finds the same charge.
    assert ledger.charge_generation(paid.id).idempotency_key == ledger.charge_key(paid.id, 1)
    with pytest.raises(ledger.InsufficientTokens, match="balance is 0"):
        ledger.create_paid_generation(Generation(user_id=user.id, prompt="wave", upload_path="u/2.jpg"))
    with session_scope() as session:
        assert len(session.exec(select(Generation)).all()) == 1
    assert ledger.balance(user.id) == 0


def test_a_purchase_is_credited_once_per_checkout_session(fresh_app_db):
    user, _ = make_user()
    first = ledger.credit_purchase(user.id, 10, "cs_test_1")
    assert ledger.credit_purchase(user.id, 10, "cs_test_1").id == first.id
    assert first.reason == "purchase" and first.idempotency_key == "purchase:stripe:cs_test_1"
    ledger.credit_purchase(user.id, 10, "cs_test_2")
    assert ledger.balance(user.id) == 20


def test_a_succeeded_generation_is_never_refunded(fresh_app_db):
    from include import generations

    user, _ = make_user(tokens=1)
    gid = new_generation(user.id)
    ledger.charge_generation(gid)
    generations.mark_succeeded(gid, {"webm": f"generations/{gid}/buddy.webm"})
    assert ledger.refund_generation(gid) is None
    assert [e.reason for e in entries(generation_id=gid)] == ["charge"] and ledger.balance(user.id) == 0


def test_reconciliation_finds_failed_unrefunded_and_stuck_generations(fresh_app_db):
    from datetime import UTC, datetime, timedelta

    from include import generations, settlement

    user, _ = make_user(tokens=5)
    failed = new_generation(user.id)
    ledger.charge_generation(failed)
    generations.mark_failed(failed, "boom")  # its refund was lost
    stuck = new_generation(user.id)
    ledger.charge_generation(stuck)
    fresh = new_generation(user.id)
    ledger.charge_generation(fresh)
    done = new_generation(user.id)
    ledger.charge_generation(done)
    generations.mark_succeeded(done, {"webm": "generations/d/buddy.webm"})
    with session_scope() as session:
        for gid in (failed, stuck, done):
            row = session.get(Generation, gid)
            row.created_at = datetime.now(UTC) - timedelta(hours=3)
            session.add(row)
    found = ledger.unsettled_generations(stuck_before=datetime.now(UTC) - timedelta(hours=1))
    assert sorted(found) == sorted([failed, stuck])
    for gid in found:
        settlement.settle_failed_generation(gid, "too slow")
        settlement.settle_failed_generation(gid, "too slow")  # a second pass changes nothing
    assert generations.get(stuck).status == "failed" and generations.get(stuck).refund_state == "refunded"
    assert ledger.unsettled_generations(stuck_before=datetime.now(UTC) - timedelta(hours=1)) == []
    assert ledger.balance(user.id) == 5 - 2  # the fresh one still holds its token, the succeeded one paid
