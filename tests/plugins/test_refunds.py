"""The failure callback refunds once alongside refund_token; a cleared finished run refuses to work again."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from sqlmodel import select

from bitbuddies_airflow import refunds
from bitbuddies_airflow.notifiers import GenerationFailedNotifier
from include import generations, ledger
from include.settlement import settle_failed_generation
from include.db import session_scope
from include.models import Generation, LedgerEntry
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)


def paid_generation(tokens: int = 1) -> tuple[int, str]:
    user, _ = make_user(tokens=tokens)
    generation = ledger.create_paid_generation(Generation(user_id=user.id, prompt="wave", upload_path="u/p.jpg"))
    return user.id, generation.id


def context(gid: str, task_id: str = "animate") -> dict:
    return {"dag_run": SimpleNamespace(conf={"generation_id": gid}), "ti": SimpleNamespace(task_id=task_id, log_url="http://af/log")}


def refunds_of(gid: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return list(session.exec(select(LedgerEntry).where(LedgerEntry.generation_id == gid, LedgerEntry.reason == "refund")).all())


def test_callback_and_refund_task_together_refund_once_and_alert(fresh_app_db, monkeypatch):
    alerts = []
    monkeypatch.setattr(refunds.alerts, "generation_failed", lambda gid, **kw: alerts.append((gid, kw)))
    user_id, gid = paid_generation()
    generations.record_error(gid, "The animate step failed: boom", "animate")
    refunds.refund_failed_run(context(gid))
    assert settle_failed_generation(gid) is True  # the refund_token task, after the callback
    assert len(refunds_of(gid)) == 1 and ledger.balance(user_id) == 1
    generation = generations.get(gid)
    assert generation.status == "failed" and generation.refund_state == "refunded" and "animate" in generation.error
    assert alerts == [(gid, {"failed_task": "animate", "error": "The animate step failed: boom", "refunded": True, "airflow_url": "http://af/log"})]


def test_callback_refunds_even_when_the_alert_fails(fresh_app_db, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("alerts down")

    monkeypatch.setattr(refunds.alerts, "generation_failed", broken)
    user_id, gid = paid_generation()
    refunds.refund_failed_run(context(gid))
    assert ledger.balance(user_id) == 1 and len(refunds_of(gid)) == 1


def test_a_succeeded_generation_is_not_refunded_by_the_callback(fresh_app_db, monkeypatch):
    alerts = []
    monkeypatch.setattr(refunds.alerts, "generation_failed", lambda gid, **kw: alerts.append(gid))
    user_id, gid = paid_generation()
    generations.mark_succeeded(gid, {"webm": "generations/x/buddy.webm"})
    # Only a task after publishing failed (the fallback formats): no refund, no "generation failed" alert.
    refunds.refund_failed_run(context(gid, "encode_fallbacks"))
    assert refunds_of(gid) == [] and ledger.balance(user_id) == 0 and alerts == []


@pytest.mark.parametrize("finish", ["failed", "succeeded"])
def test_clearing_a_finished_run_refuses_before_any_paid_work(fresh_app_db, finish):
    user_id, gid = paid_generation()
    refunds.refuse_finished_generation(context(gid, "charge_token"))  # still running: allowed
    if finish == "failed":
        settle_failed_generation(gid)
    else:
        generations.mark_succeeded(gid, {"webm": "generations/x/buddy.webm"})
    with pytest.raises(AirflowFailException, match=f"already {finish}.*Submit a new generation"):
        refunds.refuse_finished_generation(context(gid, "charge_token"))
    # The cleared run's refund teardown then changes nothing.
    settle_failed_generation(gid)
    assert ledger.balance(user_id) == (1 if finish == "failed" else 0)
    assert len(refunds_of(gid)) == (1 if finish == "failed" else 0)


def test_every_generation_task_but_the_refund_refuses_finished_generations():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS

    dag = DagBag(dag_folder=str(DAGS / "generate_buddy.py")).dags["bitbuddies_generate"]
    for t in dag.tasks:
        # charge_token (the first paid task) refuses a finished one too; before an operator's
        # generation is stored it has nothing to refuse (test_an_operators_run_not_stored_yet_...).
        expected = {"refund_token": None, "encode_fallbacks": refunds.refuse_unless_formats_pending}.get(
            t.task_id, refunds.refuse_finished_generation)
        assert t._pre_execute_hook is expected, t.task_id
    callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
    assert any(isinstance(c, GenerationFailedNotifier) for c in callbacks)


def test_the_fallback_formats_are_encoded_only_for_a_running_generation_or_a_published_one_waiting_for_them(fresh_app_db):
    from include import generations

    user, _ = make_user(tokens=4)
    running, waiting, complete, failed = (
        ledger.create_paid_generation(Generation(user_id=user.id, prompt="wave", upload_path="u/p.jpg")).id for _ in range(4)
    )
    generations.mark_stage(running, "segment_video")  # transcode, beside it, has not published yet
    generations.mark_succeeded(waiting, {"webm": "w", "poster": "p"}, pending=["gif"])
    generations.mark_succeeded(complete, {"webm": "w", "poster": "p", "gif": "g"})
    settle_failed_generation(failed)
    refunds.refuse_unless_formats_pending(context(running, "encode_fallbacks"))
    refunds.refuse_unless_formats_pending(context(waiting, "encode_fallbacks"))
    for gid in (complete, failed):
        with pytest.raises(AirflowFailException, match="nothing to encode"):
            refunds.refuse_unless_formats_pending(context(gid, "encode_fallbacks"))
