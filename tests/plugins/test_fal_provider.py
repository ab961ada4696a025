"""The model-stage operator and trigger against a provider in fal mode: a real local model server
that answers as fal.ai's queue does (``Authorization: Key``, app-id request URLs, 202/200 status
codes, no idempotency key), reached through a real Airflow connection (``AIRFLOW_CONN_*``)."""

from __future__ import annotations

import asyncio
import os
import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from bitbuddies_airflow.operators import JOB_KEY, ModelJobOperator
from bitbuddies_airflow.triggers import ModelJobTrigger
from tests.model_server.conftest import ModelServerProcess

FAL_KEY = "fal-test-key"
CONN_ID = "fal_test"


class StateStore(dict):
    def get(self, key, default=None):
        return super().get(key, default)

    def set(self, key, value, **_):
        self[key] = value


class TI(SimpleNamespace):
    def xcom_push(self, key, value):
        self.xcoms[key] = value


@pytest.fixture(scope="module")
def fal_server(tmp_path_factory):
    srv = ModelServerProcess(
        tmp_path_factory.mktemp("fal"), model_server_fal_mode="true", model_server_key=FAL_KEY
    ).start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def fal_conn(fal_server, monkeypatch):
    """The connection as an operator would configure fal: key as password, model ids per stage."""
    conn = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": fal_server.port,
        "schema": "http",
        "password": FAL_KEY,
        "extra": {"models": {"animate": "bitbuddies/selftest", "analyze": "bitbuddies/selftest"}},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return fal_server


def context(task_id: str) -> dict:
    ti = TI(dag_id="bitbuddies_generate", run_id="fal1", task_id=task_id, map_index=-1, xcoms={})
    return {"ti": ti, "task_state_store": StateStore()}


def run_trigger(trigger: ModelJobTrigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first())


def test_submit_wait_fetch_through_fal_protocol(fal_conn):
    op = ModelJobOperator(task_id="animate", stage="animate", inputs={"seconds": 1.0}, conn_id=CONN_ID, poll_interval=0.1)
    ctx = context("animate")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    saved = ctx["task_state_store"][JOB_KEY]["job"]
    # The model id came from the connection; the URLs are the ones the submit answer gave.
    assert saved["model_id"] == "bitbuddies/selftest"
    assert trigger.status_url == saved["status_url"] == f"{fal_conn.url}/bitbuddies/selftest/requests/{saved['request_id']}/status"
    # The trigger is rebuilt from its serialized form, as the triggerer does.
    path, kwargs = trigger.serialize()
    event = run_trigger(ModelJobTrigger(**kwargs))
    assert event["status"] == "completed" and event["error"] is None
    assert event["inference_time"] >= 1.0
    assert op.execute_complete(ctx, event, **deferred.value.kwargs) == {"ok": True}


def test_business_error_from_fal_fails_without_retry(fal_conn):
    op = ModelJobOperator(
        task_id="analyze", stage="analyze", inputs={"seconds": 0, "fail": "no_usable_subject"}, conn_id=CONN_ID
    )
    ctx = context("analyze")
    try:
        op.execute(ctx)
    except TaskDeferred as deferred:
        event = run_trigger(deferred.trigger)
        assert event["error_type"] == "no_usable_subject"
        with pytest.raises(AirflowFailException, match="no_usable_subject"):
            op.execute_complete(ctx, event, **deferred.kwargs)
    except AirflowFailException as exc:  # the job finished before the first status check
        assert "no_usable_subject" in str(exc)
    else:
        pytest.fail("a business error must fail the task")


def test_a_wrong_key_ends_the_wait_instead_of_polling_forever(fal_conn, monkeypatch):
    op = ModelJobOperator(task_id="animate", stage="animate", inputs={"seconds": 5.0}, conn_id=CONN_ID)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context("animate"))
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"])
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({**conn, "password": "revoked"}))
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "error" and "401" in event["error"]


def test_the_providers_copies_of_a_jobs_files_expire_with_the_retention_period(fal_conn, monkeypatch):
    """fal keeps a job's output files (cut-outs, frames, videos: copies of the user's photo) on its
    CDN until the lifetime sent with the submit runs out; it is the photo's retention period."""
    from bitbuddies_airflow.hooks import ModelProviderHook
    from include.model_queue import LIFECYCLE_HEADER, QueueClient
    from include.settings import get_settings
    from tests.plugins.fake_queue import BASE, FakeQueue

    monkeypatch.setenv("BITBUDDIES_UPLOAD_RETENTION_DAYS", "2")
    get_settings.cache_clear()
    try:
        hook_client = ModelProviderHook(CONN_ID).get_client()
        hook_client.close()
    finally:
        get_settings.cache_clear()
    assert hook_client.media_expiry_seconds == 2 * 86400

    queue = FakeQueue()
    client = QueueClient(BASE, "key", transport=queue.transport(), media_expiry_seconds=hook_client.media_expiry_seconds)
    client.submit("fal-ai/some-model", {"image_url": "https://storage.test/photo.png"}, idempotency_key="k1")
    client.close()
    assert json.loads(queue.submit_headers[0][LIFECYCLE_HEADER]) == {"expiration_duration_seconds": 172800}
