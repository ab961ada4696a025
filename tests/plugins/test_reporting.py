"""plugins/bitbuddies_airflow/reporting.py: progress events and the outcome's event and alert."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from bitbuddies_airflow import reporting
from include import alerts, event_publisher, generations
from include.db import session_scope
from include.models import Alert, Generation, utcnow
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)


@pytest.fixture
def published(monkeypatch):
    calls = []
    monkeypatch.setattr(event_publisher, "publish", lambda gid, type, data=None, key=None: calls.append((type, data, key)) or True)
    return calls


@pytest.fixture
def gid(fresh_app_db):
    user, _ = make_user()
    with session_scope() as session:
        gen = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(gen)
    return gen.id


def context(gid, task_id, try_number=1):
    ti = SimpleNamespace(task_id=task_id, try_number=try_number, start_date=utcnow() - timedelta(seconds=3),
                         log_url=f"http://af/dags/bitbuddies_generate/runs/{gid}/tasks/{task_id}?try_number={try_number}")
    return {"dag_run": SimpleNamespace(conf={"generation_id": gid}), "ti": ti, "exception": RuntimeError("provider 503")}


def test_stage_start_finish_and_retry_events(gid, published):
    reporting.report_stage(context(gid, "charge_token"))
    reporting.report_stage_finished(context(gid, "charge_token"))
    reporting.report_retry(context(gid, "animate", 2))
    reporting.report_stage(context(gid, "photo_url"))  # not a progress stage
    assert [(t, k) for t, _, k in published] == [
        ("stage_started", "stage_started:charge_token:1"),
        ("stage_finished", "stage_finished:charge_token:1"),
        ("retry", "retry:animate:2"),
    ]
    assert published[1][1]["stage"] == "charge" and published[1][1]["duration_seconds"] == pytest.approx(3, abs=1)
    assert "provider 503" in published[2][1]["error"]
    assert generations.get(gid).stage == "photo_url"


def test_failed_outcome_publishes_refund_and_terminal_and_alerts_once(gid, published):
    generations.record_error(gid, "The animate step failed: boom", "animate")
    generations.mark_failed(gid, "Something went wrong", None)
    reporting.report_outcome(context(gid, "refund_token"))
    reporting.report_outcome(context(gid, "refund_token"))  # a repeated callback
    assert [t for t, _, _ in published if t in ("refund", "failed")] == ["refund", "failed", "refund", "failed"]
    with session_scope() as session:
        (alert,) = session.exec(__import__("sqlmodel").select(Alert)).all()
    assert alert.details["failed_task"] == "animate" and alert.url.endswith(f"/runs/{gid}/tasks/animate")
    assert alerts.recent()[0].generation_id == gid


def test_succeeded_outcome_publishes_the_terminal_event(gid, published):
    generations.mark_succeeded(gid, {})
    reporting.report_outcome(context(gid, "publish"))
    assert [t for t, _, _ in published] == ["stage_finished", "succeeded"]
