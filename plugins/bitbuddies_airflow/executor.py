"""``RecoveringLocalExecutor``: Airflow's LocalExecutor that notices its dead workers at once.

The embedded profile's executor (``[core] executor =
bitbuddies_airflow.executor.RecoveringLocalExecutor``; the plugins folder is on every Airflow
process's path). Airflow 3.3's LocalExecutor keeps no record of which worker process holds which
task, so a worker killed with its task (OOM killer, ``kill -9``) loses it:

- a task the worker had taken but not started stays ``queued`` for ever: the scheduler's
  stuck-in-queued handling asks ``revoke_task``, which the LocalExecutor does not implement, and
  skips it;
- a running task (the worker is the task's supervisor) waits for the 300 s heartbeat timeout.

Here each worker reports the task it takes (its pid beside the task's key) on the result queue
before it starts it, and the scheduler's executor loop (every scheduler loop, well under a second)
reaps dead workers: a task a dead worker held and did not finish is reported failed, so the
scheduler retries it at once. The
retry's ``ModelJobOperator`` re-attaches to the job kept in ``task_state_store``: no model job is
submitted again and the ledger is not touched (its keys are per generation).

- A lost try is retried without the DAG's retry delay (2 s, doubling per try: a back-off meant for
  a failing provider, not for a dead process): the executor writes ``retry_delay_override = 0``
  (the per-try override Airflow's retry policies use, cleared when the next try starts) on the
  task instance before it reports the failure, and a worker whose task runner was killed by a
  signal (its supervisor alive: OOM killer, ``kill -9``) reports the try up for retry with a delay
  of 0 through the Execution API's retry call instead of ``finish``.

- A worker's task runner (its forked child, in its own process group) dies with the worker
  (``PR_SET_PDEATHSIG``): a retry never runs beside an orphan of the try before it.
- ``revoke_task`` (called for a task ``queued`` past ``[scheduler] task_queued_timeout``, e.g. a
  worker hung with it) kills the worker holding the task and forgets it; the scheduler then
  schedules the task again.
- A task that parks (deferred, or ``awaiting_input`` for a human's answer) and is resumed in the
  same try runs again under the same key. When the answer comes quickly, the resumed run can be
  dispatched before the parked run's worker has reported its exit: that stale "success" would
  take the key out of ``running`` and the scheduler would fail the resumed run as "killed
  externally". Workers report what they finish with their pid, and a finish from a worker whose
  key has since been dispatched again is dropped (the server already moved the task past it).
- The DAG files' imports are loaded, and the DAG files parsed, in the scheduler before the workers
  are forked (``preload.py``): task processes, forked from the workers, start with them.
- A worker notices its task process exit at once (``supervisor_exit.py``), not at its next
  heartbeat up to 5 s later.
- Workers are forked when tasks wait for one (not ``parallelism`` of them at start) and leave
  once the executor has had no task for ``WORKER_IDLE_SECONDS``: an idle stack holds no worker.
- Idle workers wait for the queue without holding its read lock (Airflow's ``SimpleQueue.get``
  holds it while blocked), so killing an idle worker cannot leave every other worker waiting for a
  lock nobody will release.

The window between a worker taking a task and reporting it is a few microseconds; a worker killed
in it leaves the task ``queued`` until ``task_queued_timeout`` (ops/stack.py sets it for the
embedded profile).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.reduction import ForkingPickler
from typing import Any

from airflow.executors import local_executor
from airflow.executors.local_executor import LocalExecutor
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.utils.state import TaskInstanceState

from bitbuddies_airflow import supervisor_exit
from bitbuddies_airflow.preload import configured_dags_folder, parse_dag_files, preload_enabled, preload_for_tasks

# The marker a worker puts on the result queue when it takes a workload: (key, TAKEN, pid).
TAKEN = "bitbuddies:taken"
# What a worker puts when it is done with a workload: (key, FINISHED, (pid, state, error)).
FINISHED = "bitbuddies:finished"
PR_SET_PDEATHSIG = 1
# Workers are forked as tasks arrive (as many as are waiting, up to parallelism) and leave after this
# long without a task: an idle stack holds none (~40 MB PSS each), a busy one keeps what it uses.
WORKER_IDLE_SECONDS = 30.0
# What a worker reports when it starts a workload (LocalExecutor's workload.running_state).
RUNNING_STATES = {TaskInstanceState.RUNNING, "running"}


def _die_with_parent() -> None:
    """In a child forked by a worker (the task runner): be killed when the worker dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: orphans are left to the heartbeat timeout
        return
    if os.getppid() == 1:  # the worker died before prctl: nobody will send the signal
        os._exit(1)


class ReportingQueue:
    """The worker's view of the activity queue: ``get`` waits for a message without holding the
    queue's read lock, takes it under the lock, and reports the take before returning it."""

    def __init__(self, queue, output) -> None:
        self._queue = queue
        self._output = output

    def get(self):
        queue = self._queue
        while True:
            queue._reader.poll(None)  # wakes every idle worker; one of them wins the message below
            with queue._rlock:
                if not queue._reader.poll(0):
                    continue
                message = queue._reader.recv_bytes()
            workload = ForkingPickler.loads(message)
            if workload is not None:
                self._output.put((workload.key, TAKEN, os.getpid()))
            return workload

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


class ReportingOutput:
    """The worker's view of the result queue: a finished workload is reported with the worker's pid."""

    def __init__(self, queue) -> None:
        self._queue = queue

    def put(self, message) -> None:
        key, state, error = message
        if state in RUNNING_STATES:
            self._queue.put(message)
        else:
            self._queue.put((key, FINISHED, (os.getpid(), state, error)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


def _retry_killed_runners_at_once() -> None:
    """In a worker: a task runner killed by a signal is reported up for retry with no delay."""
    from datetime import datetime, timezone

    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    report = ActivitySubprocess.update_task_state_if_needed

    def update_task_state_if_needed(self) -> None:
        code = self._exit_code
        if (
            self._pending_terminal_state_msg is None
            and code is not None
            and code < 0
            and self.final_state == TaskInstanceState.UP_FOR_RETRY
        ):
            self.client.task_instances.retry(
                id=self.id,
                end_date=datetime.now(tz=timezone.utc),
                rendered_map_index=self._rendered_map_index,
                retry_delay_seconds=0,
                retry_reason=f"task runner killed by signal {-code}",
            )
            return
        report(self)

    ActivitySubprocess.update_task_state_if_needed = update_task_state_if_needed


def _run_worker(logger_name, input, output, unread_messages, team_conf):
    os.register_at_fork(after_in_child=_die_with_parent)
    _retry_killed_runners_at_once()
    supervisor_exit.apply()
    local_executor._run_worker(logger_name, ReportingQueue(input, output), ReportingOutput(output), unread_messages, team_conf)


class RecoveringLocalExecutor(LocalExecutor):
    """LocalExecutor that fails (for a retry) what a dead worker held and implements revoke_task."""

    def start(self) -> None:
        self._held: dict[int, Any] = {}  # worker pid -> key of the workload it runs
        self._superseded: set[int] = set()  # workers whose key was dispatched again (a resumed task)
        self._retiring = 0  # idle workers told to exit (a None on the queue) and not reaped yet
        self._last_busy = time.monotonic()
        if preload_enabled():
            # Before the workers are forked: every task process starts with its DAG's imports done.
            preload_for_tasks()
        # No worker yet: LocalExecutor.start forks `parallelism` of them when it uses fork;
        # _check_workers forks them as tasks arrive.
        fork, self.is_mp_using_fork = self.is_mp_using_fork, False
        try:
            super().start()
        finally:
            self.is_mp_using_fork = fork

    def _spawn_workers_with_gc_freeze(self, spawn_number):
        # As Airflow's, without its gc.unfreeze() after the fork. The scheduler is forked from the
        # stack's forkserver with Airflow's imports frozen and shared with the other services
        # (ops/forkserver.py); unfrozen, they go back to the collector, whose next full collection
        # writes to every page holding them (measured: the scheduler kept 38 of ~130 MB shared).
        # Frozen objects are never collected as cyclic garbage, so what is alive when a worker is
        # forked stays: the scheduler loop's objects are gone by then (its session is closed),
        # and Airflow's dag-processor manager freezes the same way, without unfreezing.
        gc.freeze()
        for _ in range(spawn_number):
            self._spawn_worker()

    def _spawn_worker(self):
        # LocalExecutor._spawn_worker with this module's worker function.
        if preload_enabled():
            # A DAG file changed since it was parsed here is parsed again (a stat per file otherwise):
            # the new worker's task processes start with it.
            parse_dag_files(configured_dags_folder())
        proc = multiprocessing.Process(
            target=_run_worker,
            kwargs={
                "logger_name": self.log.name,
                "input": self.activity_queue,
                "output": self.result_queue,
                "unread_messages": self._unread_messages,
                "team_conf": self.conf,
            },
        )
        proc.start()
        self.workers[proc.pid] = proc

    def _process_workloads(self, workload_list):
        for workload in workload_list:
            self._superseded.update(pid for pid, held in self._held.items() if held == workload.key)
        super()._process_workloads(workload_list)

    def _read_results(self):
        while not self.result_queue.empty():
            key, state, info = self.result_queue.get()
            if state == TAKEN:
                self._held[info] = key
                continue
            if state == FINISHED:  # the worker is done with it
                pid, state, _error = info
                if self._held.get(pid) == key:
                    del self._held[pid]
                if pid in self._superseded:
                    self._superseded.discard(pid)
                    self.log.info("Ignoring %s from worker %d: %s was dispatched again since (resumed)", state, pid, key)
                    continue
            self.change_state(key, state)

    def _check_workers(self):
        dead = [pid for pid, proc in self.workers.items() if not proc.is_alive()]
        if dead:
            # Whatever a dead worker wrote before it died is in the queue already: read it first,
            # so a task it finished is not mistaken for one it lost.
            self._read_results()
            for pid in dead:
                proc = self.workers.pop(pid)
                if pid not in self._held and proc.exitcode == 0 and self._retiring:
                    self._retiring -= 1  # an idle worker that took its None and left
                else:
                    self._lost(pid, f"worker {pid} exited with {proc.exitcode}")
                proc.close()
        with self._unread_messages:
            waiting = self._unread_messages.value  # workloads on the queue no worker has taken yet
        idle = max(0, len(self.workers) - len(self._held) - self._retiring)
        now = time.monotonic()
        if waiting or self._held:
            self._last_busy = now
        missing = min(waiting - idle, self.parallelism - len(self.workers))
        if missing > 0:
            self._spawn_workers_with_gc_freeze(missing)
        elif idle > 0 and not waiting and now - self._last_busy > WORKER_IDLE_SECONDS:
            # A quiet stack keeps no idle worker: each is told to exit (and forked again when needed).
            for _ in range(idle):
                self.activity_queue.put(None)
            self._retiring += idle
            self.log.info("Retiring %d idle workers after %.0f s without tasks", idle, now - self._last_busy)

    def _lost(self, pid: int, why: str) -> None:
        key = self._held.pop(pid, None)
        if key is None or pid in self._superseded:  # a resumed task is another worker's now
            self._superseded.discard(pid)
            return
        self.log.warning("Task %s lost (%s): reporting it failed so that it is retried at once", key, why)
        _retry_without_delay(key, why)
        self.change_state(key, TaskInstanceState.FAILED, info=f"{why} while holding the task")

    def revoke_task(self, *, ti) -> None:
        key = ti.key
        for pid, held in list(self._held.items()):
            if held == key:
                del self._held[pid]
                self._superseded.discard(pid)
                self.log.warning("Revoking %s: killing worker %d, which holds it", key, pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.running.discard(key)
        self.queued_tasks.pop(key, None)


def _retry_without_delay(key, why: str) -> None:
    """The lost try's retry is due at once: ``next_retry_datetime`` reads the task instance's
    ``retry_delay_override`` before the DAG's retry delay and back-off."""
    if not isinstance(key, TaskInstanceKey):
        return
    from sqlalchemy import update

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            session.execute(
                update(TaskInstance)
                .where(
                    TaskInstance.dag_id == key.dag_id,
                    TaskInstance.task_id == key.task_id,
                    TaskInstance.run_id == key.run_id,
                    TaskInstance.map_index == key.map_index,
                )
                .values(retry_delay_override=0.0, retry_reason=why[:500])
            )
    except Exception:  # the retry then waits for the DAG's retry delay: late, not lost
        logging.getLogger(__name__).exception("Could not clear the retry delay of %s", key)
