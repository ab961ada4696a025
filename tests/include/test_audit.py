"""The ledger audit: a clean ledger passes with counts; each kind of corruption is reported."""

from __future__ import annotations

from sqlmodel import select

from api.cli import main as cli
from include import generations, ledger
from include.audit import audit
from include.db import session_scope
from include.models import Generation, LedgerEntry
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)


def world():
    """One user, 5 tokens: one succeeded, one failed and refunded, one running."""
    user, _ = make_user(tokens=5)
    ids = []
    for _ in range(3):
        ids.append(ledger.create_paid_generation(Generation(user_id=user.id, prompt="hi", upload_path="u/p.jpg")).id)
    generations.mark_succeeded(ids[0], {"webm": "generations/a/buddy.webm"})
    ledger.refund_generation(ids[1])
    generations.mark_failed(ids[1], "boom")
    return user, ids


def add(entry: LedgerEntry) -> None:
    with session_scope() as session:
        session.add(entry)


def test_a_clean_ledger_passes_and_reports_its_counts(fresh_app_db, capsys):
    world()
    report = audit()
    assert report.ok, report.violations
    assert (report.generations, report.charges, report.refunds, report.unfinished) == (3, 3, 1, 1)
    assert cli(["ledger", "audit"]) == 0
    out = capsys.readouterr().out
    assert "checked 3 generations, 3 charges, 1 refunds" in out and "0 violations" in out


def test_a_failed_generation_without_refund_is_a_violation(fresh_app_db, capsys):
    _, ids = world()
    generations.mark_failed(ids[2], "lost refund")
    report = audit()
    assert any(f"generation {ids[2]}: failed but charge" in v for v in report.violations)
    assert cli(["ledger", "audit"]) == 1
    assert "2 violations" in capsys.readouterr().out  # the failure and the balance it leaves wrong


def test_a_double_charge_and_a_refund_of_a_success_are_violations(fresh_app_db):
    user, ids = world()
    add(LedgerEntry(user_id=user.id, amount=-1, reason="charge", idempotency_key=f"charge:{ids[0]}:3", generation_id=ids[0]))
    with session_scope() as session:
        charge = session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == ledger.charge_key(ids[0]))).one()
    add(LedgerEntry(user_id=user.id, amount=1, reason="refund", idempotency_key=ledger.refund_key(charge.idempotency_key), generation_id=ids[0], refund_of=charge.id))
    text = "\n".join(audit().violations)
    assert "attempts [1, 3] are not 1..n" in text
    assert f"generation {ids[0]}: succeeded with 2 charge(s), refunded=True" in text
    assert "refund_state 'none' but refunded=True" in text


def test_an_oversized_refund_and_a_wrong_balance_are_violations(fresh_app_db):
    user, ids = world()
    with session_scope() as session:
        charge = session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == ledger.charge_key(ids[2]))).one()
    add(LedgerEntry(user_id=user.id, amount=3, reason="refund", idempotency_key=ledger.refund_key(charge.idempotency_key), generation_id=ids[2], refund_of=charge.id))
    text = "\n".join(audit().violations)
    assert f"does not compensate charge {charge.id}" in text
    assert f"user {user.id}: balance" in text
