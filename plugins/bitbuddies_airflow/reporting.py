"""Task callbacks that keep the generation's record in the app DB in step with the run.

They report progress and record the first failure's message for the user; they are best effort
(Airflow runs callbacks at most once). What must happen, the refund and the final failed state,
is done by the ``refund_token`` task, not here.

They also publish the live progress events (include/event_publisher.py): ``stage_started`` /
``stage_finished`` (with the stage's duration, which feeds the remaining-time estimate),
``retry``, and the terminal ``succeeded`` / ``failed`` event once the outcome is settled, with
the operator's alert for a failure. They post to the API the Airflow connection ``bitbuddies_api``
names, with its token. Publishing is bounded and never raises; a lost terminal
event is recreated by the API from the generation's row.

An operator's run (the trigger form) has no generation until its ``charge_token`` task stored it:
``report_stage``, ``report_retry``, ``record_failure`` and ``report_outcome`` skip such a run quietly
(``runs.not_stored_yet``); ``charge_token`` reports its stage itself once it stored the generation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException

from bitbuddies_airflow.hooks import InternalApiHook
from bitbuddies_airflow.runs import generation_id, not_stored_yet
from include import alerts, event_publisher, events, generations
from include.user_messages import is_presentable
from include.models import utcnow

log = logging.getLogger(__name__)


def _generation_id(context) -> str | None:
    return generation_id(context)


# Where a task's context keeps the API's endpoint once read: a task publishes when its stage
# starts and when it ends, and the connection is read (a round trip to Airflow's API) once.
_ENDPOINT_KEY = "bitbuddies_api_endpoint"


def _publish(context, generation_id: str, type: str, data: dict | None = None, key: str | None = None) -> bool:
    """Publish to the API named by the Airflow connection ``bitbuddies_api`` (never raises)."""
    endpoint = context.get(_ENDPOINT_KEY)
    if endpoint is None:
        try:
            endpoint = InternalApiHook().get_endpoint()
        except Exception:  # noqa: BLE001 - progress must never fail the pipeline
            log.exception("Could not read the connection to the API")
            return False
        if endpoint is None:
            return False
        context[_ENDPOINT_KEY] = endpoint
    return event_publisher.publish(generation_id, type, data, key, endpoint=endpoint)


def report_stage(context) -> None:
    """on_execute_callback: the ``stage_started`` event. The task's pre_execute
    (``refunds.refuse_finished_generation``) has recorded the stage on the generation."""
    gid = _generation_id(context)
    if gid and not not_stored_yet(context):
        ti = context["ti"]
        stage = events.stage_of(ti.task_id)
        if stage:
            # Also runs when a deferred task resumes: the key makes that a repeat, stored once.
            _publish(
                context,
                gid,
                "stage_started",
                {"stage": stage, "task": ti.task_id, "try_number": ti.try_number},
                key=f"stage_started:{ti.task_id}:{ti.try_number}",
            )


def report_stage_finished(context) -> None:
    gid = _generation_id(context)
    ti = context["ti"]
    stage = events.stage_of(ti.task_id)
    if not gid or not stage:
        return
    started = getattr(ti, "start_date", None)
    duration = (utcnow() - started).total_seconds() if started else None
    _publish(
        context,
        gid,
        "stage_finished",
        {"stage": stage, "task": ti.task_id, "try_number": ti.try_number, "duration_seconds": duration},
        key=f"stage_finished:{ti.task_id}:{ti.try_number}",
    )


@contextmanager
def inner_stage(context, stage: str) -> Iterator[None]:
    """A pipeline stage done inside another stage's task (``publish`` at the end of ``transcode``):
    its ``stage_started`` and ``stage_finished`` events, as a task of its own would publish them."""
    gid = _generation_id(context)
    ti = context["ti"]
    data = {"stage": stage, "task": ti.task_id, "try_number": ti.try_number}
    if gid:
        _publish(context, gid, "stage_started", data, key=f"stage_started:{stage}:{ti.try_number}")
    started = time.monotonic()
    yield
    if gid:
        _publish(context, gid, "stage_finished", data | {"duration_seconds": time.monotonic() - started},
                 key=f"stage_finished:{stage}:{ti.try_number}")


def report_retry(context) -> None:
    gid = _generation_id(context)
    if not gid or not_stored_yet(context):
        return
    ti = context["ti"]
    _publish(
        context,
        gid,
        "retry",
        {"stage": events.stage_of(ti.task_id), "task": ti.task_id, "try_number": ti.try_number,
         "error": user_message(ti.task_id, context.get("exception"))},
        key=f"retry:{ti.task_id}:{ti.try_number}",
    )


def task_url(context, task_id: str | None) -> str | None:
    """The Airflow UI page of ``task_id`` in this run (the failed task, for the operator)."""
    ti = context.get("ti")
    url = getattr(ti, "log_url", None)
    if not url or not task_id:
        return url
    base, _, _ = url.partition(f"/tasks/{ti.task_id}")
    return f"{base}/tasks/{task_id}"


def report_outcome(context) -> None:
    """After ``publish`` or ``refund_token``: the terminal event, and the alert for a failure."""
    gid = _generation_id(context)
    if not gid or not_stored_yet(context):
        return  # an operator's request refused before anything was stored: the run's alert says why
    report_stage_finished(context)
    try:
        generation = generations.get(gid)
    except Exception:  # noqa: BLE001
        log.exception("Could not read generation %s", gid)
        return
    if generation.status not in ("succeeded", "failed"):
        return
    if generation.status == "failed":
        refunded = generation.refund_state == "refunded"
        _publish(context, gid, "refund", {"refunded": refunded}, key="refund")
        try:
            alerts.generation_failed(
                gid, generation.failed_task, generation.error or "unknown error", refunded, task_url(context, generation.failed_task)
            )
        except Exception:  # noqa: BLE001 - the DAG's failure callback and the reconciliation alert too
            log.exception("Could not raise the alert for %s", gid)
    _publish(context, gid, generation.status, events.terminal_data(generation))


def user_message(task_id: str, exc: BaseException | None) -> str:
    """What the user reads (progress stream, ``/g/{id}``, the API): a business error's own sentence,
    anything else a fixed phrase. Exception text, file paths and presigned URLs stay in the task's
    log, which the operator's alert links to."""
    if isinstance(exc, AirflowFailException) and is_presentable(str(exc)):
        return str(exc)
    return f"The {task_id.replace('_', ' ')} step ran into a problem on our side."


def record_failure(context) -> None:
    gid = _generation_id(context)
    if not gid or not_stored_yet(context):
        return  # e.g. an operator's request refused before anything was stored: the run's alert says why
    ti = context["ti"]
    try:
        generations.record_error(gid, user_message(ti.task_id, context.get("exception")), ti.task_id)
    except Exception:  # noqa: BLE001
        log.exception("Could not record the failure of %s", gid)
