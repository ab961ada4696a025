"""ModelJobOperator: one model stage as submit -> wait -> fetch, crash-safe and worker-free while waiting.

- **submit**: the job is submitted with a deterministic ``Idempotency-Key`` (run, task and
  submission number) and its URLs are written to the task instance's ``task_state_store``
  before anything else happens. A retry (after a crash, a kill -9, a lost worker) reads the
  stored job and re-attaches to it: a paid job is never submitted twice. Only a job that the
  provider itself reports as failed for a transient reason is submitted again, under the
  next submission number.
- **wait**: the task defers to :class:`ModelJobTrigger`; no worker slot is held while the
  provider works. A job already finished is fetched at once, without deferring.
- **fetch**: the result JSON becomes the task's XCom; the URL of its main file is also pushed
  under ``image_url`` / ``video_url`` so the next stage can take it as input.

A stage whose result decides whether a later task runs (``ModerateOperator``: the review;
:class:`AnalyzeOperator`: the full-body expansion) skips that task from inside its own task
(:class:`SkippingModelJobOperator`) instead of a branch task: one task process less per generation.

Business errors (the input can never succeed) fail the task at once, without retries. Anything
else (provider trouble that outlasted the client's own retries, a timeout) fails the try and
leaves the retry to Airflow's exponential backoff; the retry re-attaches to the stored job.
Each stage sets its own ``poll_interval`` and ``job_timeout`` (the DAG knows which models are
quick and which are long).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from airflow.sdk import BaseOperator
from airflow.sdk.bases.skipmixin import SkipMixin
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from bitbuddies_airflow.hooks import DEFAULT_CONN_ID, ModelProviderHook
from bitbuddies_airflow.runs import generation_id
from bitbuddies_airflow.triggers import ModelJobTrigger
from include import retention
from include.model_queue import BUSINESS_ERROR_TYPES, Job, JobStatus, ModelJobFailed, ProviderError, ProviderRejected
from include.settings import get_settings

JOB_KEY = "model_job"
# What each stage's task does, shown as its doc in the Airflow UI (the DAG's doc tells the order).
STAGE_DOCS = {
    "moderate": "Checks the photo (NSFW): a refused photo fails the run at once, without retries.",
    "analyze": "Finds the subject (face, pose, mask) and whether it is cut off: a subject that is not skips `expand_full_body`.",
    "cartoonize": "Turns the photo's subject into the cartoon character.",
    "expand_full_body": "Draws the missing body when the subject is cut off (`analyze` skips it otherwise).",
    "segment_image": "Cuts the character out: a transparent image to animate.",
    "animate": "Animates the character with the chosen (or prompted) motion, and its walk loop.",
    "segment_video": "Keys the animation's background out: frames with alpha, for `transcode`.",
}
WAITING_DOC = (
    "One model job at the provider: submitted once (a retry re-attaches to it), waited for in the "
    "triggerer (`job_timeout`), its result fetched into XCom."
)


class ModelJobOperator(BaseOperator):
    template_fields = ("inputs",)
    ui_color = "#e8d5ff"

    def __init__(
        self,
        *,
        stage: str,
        inputs: dict[str, Any],
        conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 0.5,
        job_timeout: timedelta = timedelta(minutes=30),
        check_result: Callable[[dict[str, Any]], None] | None = None,
        grace: float = 0.0,
        **kwargs: Any,
    ):
        kwargs.setdefault("doc_md", f"{STAGE_DOCS.get(stage, f'Model stage `{stage}`.')}\n\n" + WAITING_DOC)
        super().__init__(**kwargs)
        # Seconds to watch a fresh job from the worker before deferring: a job done by then is
        # fetched at once, which spares the defer/resume round trip (a trigger pick-up, a scheduler
        # loop and a second task process: 1.5-3 s) that costs more than the job itself for the quick
        # stages. A job queued behind others at the provider is deferred at once.
        self.grace = grace
        self.stage = stage
        self.inputs = inputs
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.job_timeout = job_timeout
        self.check_result = check_result

    # -- submit ---------------------------------------------------------------------------
    def execute(self, context) -> dict[str, Any]:
        hook = ModelProviderHook(self.conn_id)
        client = hook.get_client()
        store = context["task_state_store"]
        try:
            saved = store.get(JOB_KEY, default=None)
            if saved is not None:
                job = Job.from_dict(saved["job"])
                try:
                    status = client.status(job)
                except ProviderRejected as exc:
                    if exc.status_code != 404:
                        raise AirflowException(f"{self.stage}: {exc}") from exc
                    # The provider no longer knows the job (its records were lost): only a new one can help.
                    self.log.warning("Job %s is unknown to the provider; submitting again", job.request_id)
                    job = self._submit(client, hook, store, context, saved["submission"] + 1)
                    status = None
                if status is not None and status.failed and not self._is_business(status.error_type):
                    self.log.warning("Job %s failed at the provider (%s); submitting again", job.request_id, status.error)
                    job, status = self._submit(client, hook, store, context, saved["submission"] + 1), None
                elif status is not None:
                    self.log.info("Re-attaching to job %s submitted by an earlier try", job.request_id)
                    self._record_for_retention(job, context)  # in case the earlier try died before it
            else:
                job, status = self._submit(client, hook, store, context, 1), None
            status = self._watch_briefly(client, job, status or client.status(job))
            if status.state.is_terminal():
                return self._fetch(client, job, context)
        finally:
            client.close()
        self._wait(job, context)

    def _watch_briefly(self, client, job: Job, status: JobStatus) -> JobStatus:
        """Follow the job for up to ``grace`` s in this task (a quick job is fetched here, not by a
        second task process after a trip through the triggerer): on the provider's status stream,
        which pushes the completion the moment it happens, else by polls every 0.1 s. A job with
        others ahead of it in the provider's queue will not be done soon: the worker slot goes
        back at once (under load the grace would only hold slots idle)."""
        watch_until = time.monotonic() + self.grace

        def keep_watching(current: JobStatus) -> bool:
            return not current.state.is_terminal() and not (current.queue_position or 0) > 0 and time.monotonic() < watch_until

        if not keep_watching(status):
            return status
        try:
            # A read waits at most the grace left when the stream opened.
            for status in client.watch(job, timeout=max(0.1, watch_until - time.monotonic())):
                if not keep_watching(status):
                    return status
        except httpx.ReadTimeout:
            return status  # the grace is over: the triggerer waits
        except (httpx.TransportError, ProviderError) as exc:
            self.log.info("No status stream for job %s (%s): polling", job.request_id, str(exc) or type(exc).__name__)
        while keep_watching(status):
            time.sleep(min(0.1, self.poll_interval))
            status = client.status(job)
        return status

    def _submit(self, client, hook: ModelProviderHook, store, context, submission: int) -> Job:
        ti = context["ti"]
        key = f"{ti.dag_id}:{ti.run_id}:{ti.task_id}:{ti.map_index}:{submission}"
        try:
            job = client.submit(hook.model_id(self.stage), self.inputs, idempotency_key=key)
        except ModelJobFailed as exc:  # the provider refused the input itself (e.g. 422)
            self._raise_failure(exc)
        # Written before waiting: from here on a retry re-attaches instead of paying again.
        store.set(JOB_KEY, {"job": job.to_dict(), "submission": submission})
        self.log.info("Submitted %s as job %s (key %s)", job.model_id, job.request_id, key)
        self._record_for_retention(job, context)
        return job

    @staticmethod
    def _record_for_retention(job: Job, context) -> None:
        """fal.ai knows a generation's jobs only by their request ids: keep them so the retention DAG
        and deletions can remove fal's copies (the local model server is purged by key prefix)."""
        generation_id = (getattr(context.get("dag_run"), "conf", None) or {}).get("generation_id")
        if generation_id and get_settings().model_provider == "fal":
            retention.record_fal_job(generation_id, job.request_id)

    # -- wait -----------------------------------------------------------------------------
    def _wait(self, job: Job, context) -> None:
        deadline = time.time() + self.job_timeout.total_seconds()
        # The generation, if this run is one, hears where its job waits in the provider's queue.
        trigger = ModelJobTrigger(
            job.status_url, self.conn_id, deadline, self.poll_interval, generation_id=generation_id(context), stage=self.stage
        )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            kwargs={"job": job.to_dict()},
            timeout=self.job_timeout + timedelta(minutes=1),
        )

    # -- fetch ----------------------------------------------------------------------------
    def execute_complete(self, context, event: dict[str, Any] | None = None, job: dict | None = None) -> dict[str, Any]:
        job_obj = Job.from_dict(job)
        client = ModelProviderHook(self.conn_id).get_client()
        try:
            if event and event.get("status") == "error":
                raise AirflowException(f"{self.stage}: waiting for job {job_obj.request_id} failed: {event.get('error')}")
            if not event or event.get("status") != "completed":
                self.log.error("Job %s did not finish in time; cancelling it", job_obj.request_id)
                try:
                    client.cancel(job_obj)
                except Exception:  # noqa: BLE001 - the timeout is the error worth reporting
                    self.log.exception("Cancelling job %s failed", job_obj.request_id)
                raise AirflowException(f"{self.stage}: {(event or {}).get('error') or 'timed out'}")
            return self._fetch(client, job_obj, context)
        finally:
            client.close()

    def _fetch(self, client, job: Job, context) -> dict[str, Any]:
        try:
            result = client.result(job)
        except ModelJobFailed as exc:
            self._raise_failure(exc)
        if self.check_result is not None:
            self.check_result(result)
        ti = context["ti"]
        for key in ("image", "video"):
            if isinstance(result.get(key), dict) and "url" in result[key]:
                ti.xcom_push(key=f"{key}_url", value=result[key]["url"])
        return result

    def _raise_failure(self, exc: ModelJobFailed) -> None:
        if exc.business:
            # The user sees this message; no retry can change the outcome.
            raise AirflowFailException(exc.message) from exc
        raise AirflowException(f"{self.stage} failed at the provider: {exc.message}") from exc

    @staticmethod
    def _is_business(error_type: str | None) -> bool:
        return error_type in BUSINESS_ERROR_TYPES

    def on_kill(self) -> None:
        # Killing the task on purpose (marked failed in the UI) stops the paid job too.
        try:
            from airflow.sdk import get_current_context

            saved = get_current_context()["task_state_store"].get(JOB_KEY, default=None)
            if saved:
                client = ModelProviderHook(self.conn_id).get_client()
                client.cancel(Job.from_dict(saved["job"]))
                client.close()
        except Exception:  # noqa: BLE001 - best effort on the way down
            self.log.exception("Could not cancel the model job")


class SkippingModelJobOperator(ModelJobOperator, SkipMixin):
    """A model stage whose result can skip a task right after it (Airflow's SkipMixin)."""

    inherits_from_skipmixin = True

    def _skip_with_result(self, context, result: dict[str, Any], task_id: str) -> None:
        """Skip the direct downstream task ``task_id``. Skipping ends this task by exception, so the
        result is stored as its return value first."""
        tasks = [t for t in self.get_direct_relatives(upstream=False) if t.task_id == task_id]
        context["ti"].xcom_push(key="return_value", value=result)
        self.skip(ti=context["ti"], tasks=tasks)


class AnalyzeOperator(SkippingModelJobOperator):
    """The analysis stage, which also decides the body: a subject that is not cut off skips
    ``expand_task_id`` (the decision reads only the analysis, so it is made before ``cartoonize``
    starts; the expansion waits for the cartoon when it does run)."""

    def __init__(self, *, expand_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expand_task_id = expand_task_id

    def _fetch(self, client, job: Job, context) -> dict[str, Any]:
        result = super()._fetch(client, job, context)
        self.log.info("Subject %s", "cut off: the full body is drawn" if result.get("cut_off") else "whole")
        if not result.get("cut_off"):
            self._skip_with_result(context, result, self.expand_task_id)
        return result
