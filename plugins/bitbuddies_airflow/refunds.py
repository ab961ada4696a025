"""The money side of a generation run in Airflow: the failure refund, the re-run guard, alerts.

- ``refund_failed_run`` is the DAG-level ``on_failure_callback``: it settles the generation
  (``include.settlement``: failed and refunded in one transaction, as the ``refund_token`` task
  does, so whichever runs first settles and the other changes nothing) and alerts. Callbacks run at most once in Airflow 3.3, which
  is why the task and the reconciliation DAG exist too; the run still ends failed.
- ``refuse_finished_generation`` runs before every paid task (``pre_execute``; a no-op for an
  operator's run whose generation is not stored yet): a generation that already ended (failed
  and refunded, or succeeded) is never worked on again; one still running records the task's
  stage in the same transaction. An operator who
  clears a finished run in the UI gets a clear task error instead of free or double paid work;
  the ledger stays right (the refund teardown finds nothing left to refund).
- ``send_alert`` raises the operator alert (``include.alerts.generation_failed``), best effort.
"""

from __future__ import annotations

import logging

from airflow.sdk.exceptions import AirflowFailException

from bitbuddies_airflow.runs import generation_id, not_stored_yet
from include import alerts, generations
from include.settlement import settle_failed_generation

log = logging.getLogger(__name__)

def _generation_id(context) -> str | None:
    return generation_id(context)


def send_alert(generation_id: str, *, failed_task: str | None, error: str | None, refunded: bool, log_url: str | None) -> None:
    """Best effort: the alert must never undo or block a refund."""
    try:
        alerts.generation_failed(generation_id, failed_task=failed_task, error=error or "unknown error", refunded=refunded, airflow_url=log_url)
    except Exception:  # noqa: BLE001
        log.exception("alert for generation %s failed", generation_id)


def refund_failed_run(context) -> None:
    """DAG-level on_failure_callback (runs in the dag-processor)."""
    gid = _generation_id(context)
    if not gid or not generations.exists(gid):
        return  # an operator's run that failed before it stored its generation: nothing was charged
    try:
        refunded = settle_failed_generation(gid)
    except Exception:  # noqa: BLE001 - the task and the reconciliation DAG retry what this misses
        log.exception("refund of failed generation %s in the failure callback failed", gid)
        refunded = False
    generation = generations.get(gid)
    ti = context.get("ti") or context.get("task_instance")
    if generation.status == "succeeded":
        # Only a task after publishing failed (the fallback formats): the buddy is out, nothing to refund.
        log.error("generation %s succeeded but its run failed at %s", gid, getattr(ti, "task_id", None))
        return
    send_alert(
        gid,
        failed_task=generation.failed_task or getattr(ti, "task_id", None),
        error=generation.error,
        refunded=refunded,
        log_url=getattr(ti, "log_url", None),
    )


def refuse_finished_generation(context) -> None:
    """pre_execute of every task but the refund: never work (or pay) again for a finished generation.

    A generation still running records here that this task's stage started (``generations.mark_stage``,
    which leaves a finished one untouched): the check and the record are one transaction, and the
    task's ``on_execute_callback`` (``reporting.report_stage``) only publishes the progress event.
    An operator's run whose generation ``charge_token`` has not stored yet has nothing finished to refuse."""
    gid = _generation_id(context)
    if not gid or not_stored_yet(context):
        return
    generation = generations.mark_stage(gid, context["ti"].task_id)
    if generation.status in ("succeeded", "failed"):
        refund = "its token was refunded" if generation.refund_state == "refunded" else "it was not refunded"
        raise AirflowFailException(
            f"Generation {gid} already {generation.status} ({refund}); a finished generation is not run again. "
            "Submit a new generation instead of clearing this run."
        )


def refuse_unless_formats_pending(context) -> None:
    """pre_execute of ``encode_fallbacks``, which runs beside ``transcode``: for a generation still
    running (publishing comes) or published and waiting for its fallback formats; never for a
    failed or deleted one, nor a published one that has them all."""
    gid = _generation_id(context)
    if not gid:
        return
    generation = generations.get(gid)
    waits = generation.status not in ("succeeded", "failed") or generations.pending_formats(generation)
    if not waits or generation.deleted_at is not None:
        raise AirflowFailException(f"Generation {gid} is {generation.status} and waits for no formats; nothing to encode.")
