"""include/settlement.py: a failed generation ends failed and refunded together, exactly once."""

from __future__ import annotations

import pytest

from include import generations, ledger, settlement
from include.db import session_scope
from include.models import Generation
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.include.test_ledger import entries, run_in_threads


def paid_generation(tokens: int = 1) -> tuple[int, str]:
    user, _ = make_user(tokens=tokens)
    generation = ledger.create_paid_generation(Generation(user_id=user.id, prompt="wave", upload_path="u/p.jpg"))
    return user.id, generation.id


def test_settling_fails_and_refunds_once_keeping_the_first_error(fresh_app_db):
    user_id, gid = paid_generation()
    generations.record_error(gid, "The animate step failed: boom", "animate")
    assert settlement.settle_failed_generation(gid) is True
    assert settlement.settle_failed_generation(gid, "later summary") is True  # repeat: nothing new
    generation = generations.get(gid)
    assert (generation.status, generation.refund_state, generation.error, generation.failed_task) == (
        "failed", "refunded", "The animate step failed: boom", "animate"
    )
    assert [e.reason for e in entries(generation_id=gid)] == ["charge", "refund"]
    assert ledger.balance(user_id) == 1


def test_both_changes_or_neither(fresh_app_db, monkeypatch):
    user_id, gid = paid_generation()

    def refund_breaks(session, generation):
        raise RuntimeError("disk full")

    monkeypatch.setattr(settlement.ledger, "refund_charges", refund_breaks)
    with pytest.raises(RuntimeError):
        settlement.settle_failed_generation(gid)
    # Not failed without its refund: the generation is untouched and the next settlement does both.
    assert generations.get(gid).status == "queued" and ledger.balance(user_id) == 0
    monkeypatch.undo()
    assert settlement.settle_failed_generation(gid) is True
    assert generations.get(gid).status == "failed" and ledger.balance(user_id) == 1


def test_a_succeeded_generation_is_left_alone_and_a_settled_one_cannot_succeed(fresh_app_db):
    user_id, done = paid_generation(tokens=2)
    generations.mark_succeeded(done, {"webm": "generations/d/buddy.webm"})
    assert settlement.settle_failed_generation(done) is False
    assert generations.get(done).status == "succeeded" and ledger.balance(user_id) == 1

    failed = ledger.create_paid_generation(Generation(user_id=user_id, prompt="wave", upload_path="u/q.jpg")).id
    settlement.settle_failed_generation(failed)
    generations.mark_succeeded(failed, {"webm": "generations/f/buddy.webm"})  # a late publish
    assert generations.get(failed).status == "failed" and ledger.balance(user_id) == 1


def test_a_never_charged_generation_ends_failed_without_a_refund(fresh_app_db):
    user, _ = make_user(tokens=0)
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt="wave", upload_path="u/p.jpg")
        session.add(generation)
    assert settlement.settle_failed_generation(generation.id, "stuck") is False
    assert generations.get(generation.id).status == "failed" and entries(generation_id=generation.id) == []


def test_concurrent_settlements_and_a_racing_publish_never_refund_a_delivered_buddy(fresh_app_db):
    user_id, gid = paid_generation()

    def settle_or_publish(i=iter(range(100))):
        if next(i) % 2:
            return generations.mark_succeeded(gid, {"webm": "generations/x/buddy.webm"}).status
        return settlement.settle_failed_generation(gid)

    results = run_in_threads(10, settle_or_publish)
    assert not [r for r in results if isinstance(r, Exception)], results
    generation = generations.get(gid)
    refunds = [e for e in entries(generation_id=gid) if e.reason == "refund"]
    if generation.status == "succeeded":
        assert refunds == [] and generation.refund_state == "none" and ledger.balance(user_id) == 0
    else:
        assert len(refunds) == 1 and generation.refund_state == "refunded" and ledger.balance(user_id) == 1
