"""ModelJobOperator: submit once, store the job before waiting, re-attach on retry, fail fast on business errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from bitbuddies_airflow import operators
from bitbuddies_airflow.operators import JOB_KEY, ModelJobOperator
from bitbuddies_airflow.triggers import ModelJobTrigger
from include.model_queue import QueueClient, RetryPolicy
from tests.plugins.fake_queue import BASE, FakeQueue


class StateStore(dict):
    def get(self, key, default=None):
        return super().get(key, default)

    def set(self, key, value, **_):
        self[key] = value


class TI(SimpleNamespace):
    def xcom_push(self, key, value):
        self.xcoms[key] = value


@pytest.fixture
def queue(monkeypatch):
    q = FakeQueue()

    class Hook:
        def __init__(self, conn_id):
            pass

        def model_id(self, stage):
            return f"bitbuddies/{stage}"

        def get_client(self):
            return QueueClient(BASE, transport=q.transport(), retry=RetryPolicy(attempts=3, base_delay=0, max_delay=0))

    monkeypatch.setattr(operators, "ModelProviderHook", Hook)
    return q


def make_context(store=None):
    ti = TI(dag_id="bitbuddies_generate", run_id="gen1", task_id="animate", map_index=-1, xcoms={})
    return {"ti": ti, "task_state_store": store if store is not None else StateStore()}


def op(**kwargs):
    return ModelJobOperator(task_id="animate", stage="animate", inputs={"image_url": "x"}, **kwargs)


def test_submits_stores_job_then_defers_without_holding_a_worker(queue):
    ctx = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op().execute(ctx)
    assert isinstance(deferred.value.trigger, ModelJobTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert len(queue.submissions) == 1
    saved = ctx["task_state_store"][JOB_KEY]
    assert saved["submission"] == 1 and saved["job"]["request_id"] == "req1"
    assert queue.submissions[0][1] == "bitbuddies_generate:gen1:animate:-1:1"


def test_the_trigger_knows_the_generation_to_report_queue_positions_to(queue):
    ctx = make_context() | {"dag_run": SimpleNamespace(conf={"generation_id": "gen1"})}
    with pytest.raises(TaskDeferred) as deferred:
        op().execute(ctx)
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["generation_id"] == "gen1" and kwargs["stage"] == "animate"


def test_a_retry_reattaches_to_the_stored_job_and_never_resubmits(queue):
    store = StateStore()
    with pytest.raises(TaskDeferred):
        op().execute(make_context(store))
    # The worker died while waiting; the retry starts at execute() again.
    with pytest.raises(TaskDeferred):
        op().execute(make_context(store))
    assert len(queue.submissions) == 1


def test_a_finished_job_is_fetched_without_deferring(queue):
    queue.next_job = {"states": ["COMPLETED"], "result": {"video": {"url": "http://v/a.mkv"}, "fps": 24}}
    ctx = make_context()
    result = op().execute(ctx)
    assert result["fps"] == 24
    assert ctx["ti"].xcoms["video_url"] == "http://v/a.mkv"


def test_resume_fetches_the_result(queue):
    ctx = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op().execute(ctx)
    queue.jobs["req1"].polls = 99
    result = op().execute_complete(ctx, {"status": "completed"}, **deferred.value.kwargs)
    assert result["image"]["url"].endswith("x.png")
    assert ctx["ti"].xcoms["image_url"].endswith("x.png")


def test_business_errors_fail_fast_without_retry(queue):
    queue.next_job = {
        "states": ["COMPLETED"],
        "error": "We couldn't find a person or character in this photo.",
        "error_type": "no_usable_subject",
        "result_status": 422,
    }
    with pytest.raises(AirflowFailException, match="couldn't find a person"):
        op().execute(make_context())


def test_provider_side_transient_failure_is_retried_with_a_new_submission(queue):
    queue.next_job = {"states": ["COMPLETED"], "error": "GPU fell over", "error_type": "internal", "result_status": 500}
    store = StateStore()
    with pytest.raises(AirflowException, match="GPU fell over"):
        op().execute(make_context(store))
    queue.next_job = {"states": ["COMPLETED"]}
    result = op().execute(make_context(store))
    assert "image" in result
    assert [k for _, k in queue.submissions] == [
        "bitbuddies_generate:gen1:animate:-1:1",
        "bitbuddies_generate:gen1:animate:-1:2",
    ]


def test_transient_http_errors_are_retried_by_the_client(queue):
    queue.transient_failures = 2
    with pytest.raises(TaskDeferred):
        op().execute(make_context())
    assert len(queue.jobs) == 1


def test_timeout_cancels_the_job(queue):
    ctx = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op().execute(ctx)
    with pytest.raises(AirflowException, match="deadline"):
        op().execute_complete(ctx, {"status": "timeout", "error": "no result before the deadline"}, **deferred.value.kwargs)
    assert queue.jobs["req1"].cancelled


def test_result_check_can_reject(queue):
    queue.next_job = {"states": ["COMPLETED"], "result": {"nsfw": True}}

    def reject(result):
        if result["nsfw"]:
            raise AirflowFailException("nope")

    with pytest.raises(AirflowFailException):
        op(check_result=reject).execute(make_context())


def test_invalid_input_is_a_business_error(queue):
    queue.next_job = {
        "states": ["COMPLETED"],
        "error": "Downloading the input failed: HTTP 404",
        "error_type": "invalid_input",
        "result_status": 422,
    }
    with pytest.raises(AirflowFailException, match="Downloading the input failed"):
        op().execute(make_context())


def test_a_refused_submit_fails_fast(queue):
    queue.reject_submit = "image_url: field required"
    with pytest.raises(AirflowFailException, match="field required"):
        op().execute(make_context())
    assert len(queue.submissions) == 1


def test_a_wait_that_ended_in_error_fails_the_try(queue):
    ctx = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op().execute(ctx)
    with pytest.raises(AirflowException, match="HTTP 401") as failed:
        op().execute_complete(ctx, {"status": "error", "error": "status: HTTP 401"}, **deferred.value.kwargs)
    assert not isinstance(failed.value, AirflowFailException)  # a retry re-attaches
    assert not queue.jobs["req1"].cancelled


def test_a_job_the_provider_forgot_is_submitted_again(queue):
    store = StateStore()
    with pytest.raises(TaskDeferred):
        op().execute(make_context(store))
    queue.jobs.clear()  # the provider lost its records
    with pytest.raises(TaskDeferred):
        op().execute(make_context(store))
    assert [k for _, k in queue.submissions][-1] == "bitbuddies_generate:gen1:animate:-1:2"
    assert store[JOB_KEY]["submission"] == 2


def test_a_job_done_within_the_grace_is_fetched_without_deferring(queue):
    # IN_QUEUE at the first poll, then IN_PROGRESS and COMPLETED pushed on the status stream.
    ctx = make_context()
    result = op(grace=5.0, poll_interval=0.05).execute(ctx)
    assert "image" in result and queue.jobs["req1"].polls == 3 and queue.jobs["req1"].streams == 1


def test_without_a_status_stream_the_grace_polls(queue):
    queue.stream_status = 404
    result = op(grace=5.0, poll_interval=0.05).execute(make_context())
    assert "image" in result and queue.jobs["req1"].polls == 3 and queue.jobs["req1"].streams == 0


def test_a_job_waiting_behind_others_defers_at_once_instead_of_holding_a_worker(queue):
    queue.next_job = {"states": ["IN_QUEUE"], "queue_position": 3}
    with pytest.raises(TaskDeferred):
        op(grace=30.0, poll_interval=0.05).execute(make_context())
    assert queue.jobs["req1"].polls == 1


def test_a_job_still_running_after_the_grace_defers(queue):
    queue.next_job = {"states": ["IN_PROGRESS"]}
    with pytest.raises(TaskDeferred):
        op(grace=0.3, poll_interval=0.05).execute(make_context())
    assert queue.jobs["req1"].polls >= 3


def test_with_fal_each_submitted_job_is_recorded_for_retention(queue, tmp_path, monkeypatch):
    """fal knows a generation's jobs only by request id: the operator keeps them (include/retention.py)
    so the retention DAG and deletions can remove fal's copies. The local model server needs no record."""
    from include import storage
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("BITBUDDIES_STORAGE_URL", raising=False)
    gid = "f" * 32
    for provider in ("local", "fal"):
        monkeypatch.setenv("BITBUDDIES_MODEL_PROVIDER", provider)
        get_settings.cache_clear()
        try:
            ctx = make_context() | {"dag_run": SimpleNamespace(conf={"generation_id": gid})}
            with pytest.raises(TaskDeferred):
                op().execute(ctx)
            request_id = ctx["task_state_store"][JOB_KEY]["job"]["request_id"]
            recorded = storage.list_keys(f"provider_jobs/{gid}")
            assert recorded == ([f"provider_jobs/{gid}/{request_id}"] if provider == "fal" else [])
        finally:
            get_settings.cache_clear()
        queue.keys.clear()
