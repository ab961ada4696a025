"""``RecoveringCeleryExecutor``: the CeleryExecutor that requeues a queued task only when it is lost.

The production profile's executor (``[core] executor =
bitbuddies_airflow.celery_executor.RecoveringCeleryExecutor``). A Celery worker killed between
receiving a task and starting it leaves the message unacknowledged in Redis until the visibility
timeout (hours, ``task_acks_late``); the scheduler's stuck-in-queued check (``[scheduler]
task_queued_timeout``, 40 s) revokes and reschedules such a task, which brings it back within a
minute.

On a loaded machine a live worker can also hold a task past that timeout (it received it; forking
the pool process and starting the task runner took longer). Revoking it then is worse than
waiting: the worker drops the task, it goes round the scheduler again, and the third time it
"sticks" the scheduler fails it (``num_stuck_in_queued_retries``). So before revoking, this
executor asks the workers (Celery's ``query_task`` broadcast, 3 s, one for every stuck task of a
check) whether one of them holds the task's message, reserved or active. If one does, the task is
not lost: it is left queued, its ``queued_dttm`` moved on so that the stuck check takes it up again
15 s later (the task's "queued at" then reads that much later than it was), and the scheduler is
told this executor does not revoke it this time (``NotImplementedError``, which the scheduler
skips; the other stuck tasks of this round are taken up on its next check, 5 s later).
A worker that is dead, hung or too stopped to answer within the wait holds nothing: the task is
revoked and rescheduled as Airflow does.
"""

from __future__ import annotations

import time
from datetime import timedelta

from airflow.configuration import conf
from airflow.providers.celery.executors.celery_executor import CeleryExecutor
from airflow.sdk import timezone

# How long the workers have to answer whether they hold a task.
QUERY_TIMEOUT_S = 3.0
# How soon a task a live worker held is asked about again.
RECHECK_S = 15.0


class RecoveringCeleryExecutor(CeleryExecutor):
    """CeleryExecutor whose ``revoke_task`` leaves alone a task a live worker holds."""

    def revoke_task(self, *, ti) -> None:
        key = self.get_task_key(ti) if self.supports_task_instance_uuid else ti.key
        result = self.workloads.get(key)
        holder = self._holder(result.task_id) if result is not None else None
        if holder is not None:
            self.log.warning(
                "%s queued past task_queued_timeout, but %s holds it (%s): not revoked, looked at again later",
                ti.key,
                *holder,
            )
            # Stuck again (for the scheduler's query) RECHECK_S from now: a worker that dies with
            # it after this answer is found out within RECHECK_S plus a check interval.
            timeout = conf.getfloat("scheduler", "task_queued_timeout")
            ti.queued_dttm = timezone.utcnow() - timedelta(seconds=max(timeout - RECHECK_S, 0))
            raise NotImplementedError("held by a live worker")
        super().revoke_task(ti=ti)

    def _holder(self, celery_task_id: str) -> tuple[str, str] | None:
        """(worker, 'reserved' or 'active') of the live worker holding the task's message, or None.

        One broadcast answers for every task this executor has in flight, kept for the rest of
        the scheduler's stuck-in-queued round: a killed worker leaves several tasks lost at once,
        and the scheduler would otherwise wait out the answer time once for each of them."""
        asked_at, asked, held = getattr(self, "_asked", (0.0, set(), {}))
        if time.monotonic() - asked_at > QUERY_TIMEOUT_S * 2 or celery_task_id not in asked:
            asked = {r.task_id for r in self.workloads.values()} | {celery_task_id}
            held = self._ask_workers(asked)
            self._asked = (time.monotonic(), asked, held)
        return held.get(celery_task_id)

    def _ask_workers(self, celery_task_ids: set[str]) -> dict[str, tuple[str, str]]:
        try:
            replies = self.celery_app.control.inspect(timeout=QUERY_TIMEOUT_S).query_task(*celery_task_ids) or {}
        except Exception:
            self.log.exception("Could not ask the workers which tasks they hold: treating the stuck ones as lost")
            return {}
        return {task_id: (worker, info[0]) for worker, tasks in replies.items() for task_id, info in (tasks or {}).items()}
