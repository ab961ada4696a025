"""plugins/bitbuddies_airflow/reporting.py: progress events and the outcome's event and alert."""

from __future__ import annotations

import json

from datetime import timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from bitbuddies_airflow import reporting
from include import alerts, event_publisher, generations
from include.db import session_scope
from include.models import Alert, Generation, utcnow
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)


API_CONNECTION = {"conn_type": "http", "schema": "http", "host": "api.internal", "port": 8000, "password": "internal-token"}


@pytest.fixture
def published(monkeypatch):
    """Every publish, with the endpoint it went to (the connection ``bitbuddies_api``)."""
    calls = []
    monkeypatch.setenv("AIRFLOW_CONN_BITBUDDIES_API", json.dumps(API_CONNECTION))

    def publish(gid, type, data=None, key=None, endpoint=None):
        assert endpoint.url == "http://api.internal:8000" and endpoint.token == "internal-token"
        calls.append((type, data, key))
        return True

    monkeypatch.setattr(event_publisher, "publish", publish)
    return calls


def test_without_the_connection_nothing_is_published(gid, monkeypatch):
    """The token is the connection's: the settings' (environment, var dir) are never used by a task."""
    monkeypatch.delenv("AIRFLOW_CONN_BITBUDDIES_API", raising=False)
    monkeypatch.setenv("BITBUDDIES_EVENTS_PUBLISH_URL", "http://127.0.0.1:9")
    sent = []
    monkeypatch.setattr(event_publisher, "publish", lambda *a, **k: sent.append(a) or True)
    reporting.report_retry(context(gid, "animate"))
    assert sent == []


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
    from bitbuddies_airflow import refunds

    reporting.report_stage(context(gid, "charge_token"))
    reporting.report_stage_finished(context(gid, "charge_token"))
    reporting.report_retry(context(gid, "animate", 2))
    ctx = context(gid, "photo_url")  # not a progress stage
    refunds.refuse_finished_generation(ctx)  # pre_execute records the stage; the callback publishes
    reporting.report_stage(ctx)
    assert [(t, k) for t, _, k in published] == [
        ("stage_started", "stage_started:charge_token:1"),
        ("stage_finished", "stage_finished:charge_token:1"),
        ("retry", "retry:animate:2"),
    ]
    assert published[1][1]["stage"] == "charge" and published[1][1]["duration_seconds"] == pytest.approx(3, abs=1)
    # The exception's text stays in the task log; the user reads a fixed phrase.
    assert published[2][1]["error"] == "The animate step ran into a problem on our side."
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
    reporting.report_outcome(context(gid, "transcode"))  # transcode publishes
    assert [t for t, _, _ in published] == ["stage_finished", "succeeded"]


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("HTTPError 403 for https://bucket.s3.amazonaws.com/uploads/x/photo.jpg?X-Amz-Signature=abc"),
        FileNotFoundError(2, "No such file or directory", "/work/var/storage/uploads/x/photo.jpg"),
        AirflowFailException("boom\nTraceback (most recent call last):"),
        AirflowFailException("KeyError('image')"),
    ],
)
def test_internal_error_text_never_reaches_the_user(exc):
    assert reporting.user_message("animate", exc) == "The animate step ran into a problem on our side."


def test_business_errors_reach_the_user_word_for_word():
    message = "We couldn't find a person or character in this photo."
    assert reporting.user_message("analyze", AirflowFailException(message)) == message


def operator_run_context(task_id="charge_token", try_number=1, exception=None) -> dict:
    """A run an operator started from the trigger form: no generation id in its conf."""
    ti = SimpleNamespace(task_id=task_id, try_number=try_number, start_date=utcnow(), log_url="http://af/log")
    run = SimpleNamespace(dag_id=generations.GENERATE_DAG_ID, run_id="manual__2026-12-01T10:00:00+00:00", conf={"photo": "/p.jpg"})
    return {"dag_run": run, "params": {"photo": "/p.jpg"}, "ti": ti, "exception": exception}


def test_an_operators_run_not_stored_yet_is_skipped_quietly_by_the_callbacks(fresh_app_db, published, caplog):
    # charge_token stores an operator's generation: its callbacks and pre_execute run before that
    # (first try), or after a refused request stored nothing. Nothing to report, record or refuse.
    from bitbuddies_airflow import refunds
    from bitbuddies_airflow.runs import generation_id, not_stored_yet

    refused = AirflowFailException("No user has the email 'nobody@example.com'.")
    ctx = operator_run_context(exception=refused)
    assert not_stored_yet(ctx) and not generations.exists(generation_id(ctx))
    refunds.refuse_finished_generation(ctx)
    reporting.report_stage(ctx)
    reporting.report_retry(operator_run_context(try_number=2, exception=RuntimeError("download failed")))
    reporting.record_failure(ctx)
    reporting.report_outcome(operator_run_context("refund_token"))  # the refund teardown: never stored
    assert published == [] and not generations.exists(generation_id(ctx))
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]


def test_an_operators_stored_generation_is_reported_and_guarded_as_any_other(fresh_app_db, published):
    from bitbuddies_airflow import refunds
    from bitbuddies_airflow.runs import generation_id, not_stored_yet

    ctx = operator_run_context()
    user, _ = make_user()
    with session_scope() as session:
        session.add(Generation(id=generation_id(ctx), user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg"))
    assert not not_stored_yet(ctx)
    reporting.report_stage(ctx)
    assert [k for _, _, k in published] == ["stage_started:charge_token:1"]
    generations.mark_succeeded(generation_id(ctx), {})
    with pytest.raises(AirflowFailException, match="already succeeded"):
        refunds.refuse_finished_generation(ctx)


def test_an_api_run_never_queries_whether_its_generation_is_stored(monkeypatch):
    from bitbuddies_airflow.runs import not_stored_yet

    monkeypatch.setattr(generations, "exists", lambda gid: pytest.fail("queried"))
    assert not_stored_yet({"dag_run": SimpleNamespace(conf={"generation_id": "a" * 32})}) is False


def test_a_task_reads_the_api_connection_once(gid, published, monkeypatch):
    from bitbuddies_airflow.hooks import InternalApiHook

    reads = []
    real = InternalApiHook.get_endpoint
    monkeypatch.setattr(InternalApiHook, "get_endpoint", lambda self: reads.append(1) or real(self))
    ctx = context(gid, "animate")
    reporting.report_stage(ctx)
    reporting.report_stage_finished(ctx)
    assert len(published) == 2 and len(reads) == 1


def test_a_stage_inside_another_task_reports_its_own_start_and_finish(gid, published):
    # publish is the end of transcode's task: the user's progress still shows it as a stage.
    ctx = context(gid, "transcode")
    with reporting.inner_stage(ctx, "publish"):
        generations.mark_succeeded(gid, {})
    (started, data, key), (finished, done, done_key) = published
    assert (started, data["stage"], data["task"], key) == ("stage_started", "publish", "transcode", "stage_started:publish:1")
    assert (finished, done_key) == ("stage_finished", "stage_finished:publish:1") and done["duration_seconds"] >= 0
