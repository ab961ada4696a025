"""The operator's alerts as Airflow notifiers, attached as the DAGs' ``on_failure_callback``.

- :class:`GenerationFailedNotifier` (the generation DAG): settles the failed generation (failed
  and refunded, ``include.settlement``) and raises its ``generation_failed`` alert; a run of the
  trigger form that stored nothing gets the run's alert.
- :class:`RunFailedNotifier` (every other DAG): raises a ``dag_run_failed`` alert for the run.

Both deliver through ``include.alerts``: the alert table's UNIQUE key makes each alert exist and
be sent once however many callers report it (the refund task, the reconciliation DAG, a repeated
callback), and an alert that could not be sent is sent again by the reconciliation DAG
(``alerts.redeliver_undelivered``). Pushover's credentials come from the Airflow connection
``bitbuddies_pushover`` (``pushover.py``). Airflow runs a DAG's failure callback at most once, in
the dag-processor: anything that must happen is also a task.
"""

from __future__ import annotations

from airflow.sdk.bases.notifier import BaseNotifier

from bitbuddies_airflow.refunds import refund_failed_run
from bitbuddies_airflow.runs import generation_id
from include import alerts, generations


def _failed_task(context) -> tuple[str | None, str | None]:
    """The failed task's id and its log URL, as far as the callback's context tells."""
    ti = context.get("ti") or context.get("task_instance")
    return getattr(ti, "task_id", None), getattr(ti, "log_url", None)


class RunFailedNotifier(BaseNotifier):
    """A run of any other DAG failed: alert the operator, once per run."""

    def notify(self, context) -> None:
        run = context.get("dag_run")
        dag_id = getattr(run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "unknown")
        run_id = getattr(run, "run_id", None) or "unknown"
        task_id, url = _failed_task(context)
        reason = context.get("reason") or (str(context["exception"]) if context.get("exception") else None)
        try:
            alerts.dag_run_failed(dag_id, run_id, task_id, reason, url)
        except Exception:  # noqa: BLE001 - an alert must never fail the callback's other work
            self.log.exception("alert for %s run %s failed", dag_id, run_id)


class GenerationFailedNotifier(RunFailedNotifier):
    """A generation's run failed: settle it (refund) and alert the operator, once.

    A run from the trigger form that failed before storing its generation (unknown email, not a
    photo) has nothing to settle: the operator gets the run's alert instead.
    """

    def notify(self, context) -> None:
        gid = generation_id(context)
        if gid and generations.exists(gid):
            refund_failed_run(context)
        else:
            super().notify(context)
