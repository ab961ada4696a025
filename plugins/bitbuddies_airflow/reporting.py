"""Task callbacks that keep the generation's record in the app DB in step with the run.

They report progress and record the first failure's message for the user; they are best effort
(Airflow runs callbacks at most once). What must happen, the refund and the final failed state,
is done by the ``refund_token`` task, not here.
"""

from __future__ import annotations

import logging

from airflow.sdk.exceptions import AirflowFailException

from include import generations

log = logging.getLogger(__name__)


def _generation_id(context) -> str | None:
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    return conf.get("generation_id")


def report_stage(context) -> None:
    gid = _generation_id(context)
    if gid:
        try:
            generations.mark_stage(gid, context["ti"].task_id)
        except Exception:  # noqa: BLE001 - progress must never fail the pipeline
            log.exception("Could not report stage for %s", gid)


def user_message(task_id: str, exc: BaseException | None) -> str:
    """What the user reads: business errors verbatim, anything else as a short, honest summary."""
    if isinstance(exc, AirflowFailException):
        return str(exc)
    stage = task_id.replace("_", " ")
    detail = str(exc or "unknown error").strip().splitlines()[0][:300] if exc else "unknown error"
    return f"The {stage} step failed: {detail}"


def record_failure(context) -> None:
    gid = _generation_id(context)
    if not gid:
        return
    ti = context["ti"]
    try:
        generations.record_error(gid, user_message(ti.task_id, context.get("exception")), ti.task_id)
    except Exception:  # noqa: BLE001
        log.exception("Could not record the failure of %s", gid)
