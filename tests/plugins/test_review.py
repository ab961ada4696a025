"""PhotoReviewOperator: an operator's answer, or its absence, as the generation's outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.providers.standard.operators import hitl
from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput

from bitbuddies_airflow.review import PhotoReviewOperator
from include.review import REJECTED_BY_REVIEW


def review() -> PhotoReviewOperator:
    return PhotoReviewOperator(task_id="review", moderate_task_id="moderate", photo_url="http://photos.example/p.jpg", prompt="wave")


def answer(option: str) -> dict:
    return {"chosen_options": [option], "params_input": {}, "responded_at": datetime.now(UTC), "responded_by_user": {"id": "admin", "name": "admin"}}


def test_it_asks_with_the_score_and_waits_without_a_worker(monkeypatch):
    asked = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **request: asked.append(request))
    ti = SimpleNamespace(id="ti-1", run_id="run-1", xcom_pull=lambda task_ids: {"nsfw": False, "score": 0.38})
    context = {"task_instance": ti, "ti": ti, "dag_run": SimpleNamespace(conf={"generation_id": "g" * 32})}
    with pytest.raises(TaskAwaitingInput) as parked:
        review().execute(context)
    assert parked.value.timeout == timedelta(seconds=1800)  # review_timeout: no answer is a rejection
    assert asked[0]["options"] == ["Approve", "Reject"] and not asked[0]["defaults"]
    assert "0.38" in asked[0]["subject"] and "g" * 32 in asked[0]["subject"] and "http://photos.example/p.jpg" in asked[0]["body"]


def test_approved_goes_on():
    assert review().execute_complete({}, answer("Approve"))["chosen_options"] == ["Approve"]


@pytest.mark.parametrize(
    "event", [answer("Reject"), {"error": "The Human-in-the-loop response timeout has passed without a response.", "error_type": "timeout"}]
)
def test_rejected_or_unanswered_fails_with_the_users_sentence(event):
    with pytest.raises(AirflowFailException) as failed:  # not retried: a retry would ask again
        review().execute_complete({}, event)
    assert str(failed.value) == REJECTED_BY_REVIEW
