"""RecoveringLocalExecutor with real worker processes; the workload is a stand-in task.

The worker runs ``BaseExecutor.run_workload``, patched here (before the workers fork) to do what a
task supervisor does without Airflow's API: fork a "task runner" child, record its pid, wait.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from airflow.executors.base_executor import BaseExecutor
from airflow.utils.state import TaskInstanceState

from bitbuddies_airflow import executor as executor_module
from bitbuddies_airflow.executor import RecoveringLocalExecutor


@dataclass(frozen=True)
class Workload:
    key: str
    seconds: float
    runner_pid_file: str
    running_state = TaskInstanceState.RUNNING
    success_state = TaskInstanceState.SUCCESS
    failure_state = TaskInstanceState.FAILED

    @property
    def display_name(self) -> str:
        return self.key


def supervise(workload: Workload, **_kwargs) -> int:
    pid = os.fork()
    if pid == 0:  # the "task runner": outlives its supervisor unless something kills it
        time.sleep(60)
        os._exit(0)
    Path(workload.runner_pid_file).write_text(str(pid))
    time.sleep(workload.seconds)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return 0


@pytest.fixture
def executor(monkeypatch):
    monkeypatch.setattr(BaseExecutor, "run_workload", staticmethod(supervise))
    running = RecoveringLocalExecutor(parallelism=2)
    running.start()
    yield running
    for proc in running.workers.values():
        proc.kill()
    for proc in running.workers.values():
        proc.join()


def submit(executor, workload: Workload) -> None:
    executor.activity_queue.put(workload)
    executor.running.add(workload.key)
    with executor._unread_messages:
        executor._unread_messages.value += 1
    executor._check_workers()


def sync_until(executor, done, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while not done():
        assert time.time() < deadline, (executor._held, executor.event_buffer)
        executor.sync()
        time.sleep(0.05)


def holder(executor, key: str) -> int:
    sync_until(executor, lambda: key in executor._held.values())
    return next(pid for pid, held in executor._held.items() if held == key)


def runner_pid(path: Path) -> int:
    deadline = time.time() + 20
    while not path.exists() or not path.read_text():
        assert time.time() < deadline
        time.sleep(0.05)
    return int(path.read_text())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_task_whose_worker_dies_is_reported_failed_and_its_runner_dies_too(executor, tmp_path):
    task = Workload("a", seconds=60, runner_pid_file=str(tmp_path / "a"))
    submit(executor, task)
    worker = holder(executor, "a")
    runner = runner_pid(tmp_path / "a")
    os.kill(worker, signal.SIGKILL)
    sync_until(executor, lambda: executor.event_buffer.get("a", (None,))[0] == TaskInstanceState.FAILED)
    state, info = executor.event_buffer["a"]
    assert state == TaskInstanceState.FAILED and f"worker {worker} exited with -9" in info
    assert not executor._held
    deadline = time.time() + 10
    while not gone(runner):  # PR_SET_PDEATHSIG
        assert time.time() < deadline, "the task runner outlived its worker"
        time.sleep(0.05)


def test_a_task_finished_before_its_worker_died_stays_succeeded(executor, tmp_path):
    submit(executor, Workload("b", seconds=0.2, runner_pid_file=str(tmp_path / "b")))
    worker = holder(executor, "b")
    sync_until(executor, lambda: executor.event_buffer.get("b", (None,))[0] == TaskInstanceState.SUCCESS)
    os.kill(worker, signal.SIGKILL)
    sync_until(executor, lambda: worker not in executor.workers)
    assert executor.event_buffer["b"][0] == TaskInstanceState.SUCCESS


def test_revoke_task_kills_the_holder_and_forgets_the_task(executor, tmp_path):
    submit(executor, Workload("c", seconds=60, runner_pid_file=str(tmp_path / "c")))
    worker = holder(executor, "c")
    os.kill(worker, signal.SIGSTOP)  # hung: only revoke_task can free the task
    executor.revoke_task(ti=SimpleNamespace(key="c"))
    assert "c" not in executor.running and not executor._held
    sync_until(executor, lambda: worker not in executor.workers)
    # The scheduler reschedules it: no failure from here (the RUNNING report of its start stays).
    assert executor.event_buffer.get("c", (None,))[0] != TaskInstanceState.FAILED


def test_killing_an_idle_worker_does_not_stop_the_others(executor, tmp_path):
    for key in ("w1", "w2"):  # two tasks at once: two workers, idle again afterwards
        submit(executor, Workload(key, seconds=0.5, runner_pid_file=str(tmp_path / key)))
    sync_until(executor, lambda: all(executor.event_buffer.get(k, (None,))[0] == TaskInstanceState.SUCCESS for k in ("w1", "w2")))
    idle = list(executor.workers)
    assert len(idle) == 2
    os.kill(idle[0], signal.SIGKILL)  # possibly the one waiting on the queue
    time.sleep(0.2)
    submit(executor, Workload("d", seconds=0.1, runner_pid_file=str(tmp_path / "d")))
    sync_until(executor, lambda: executor.event_buffer.get("d", (None,))[0] == TaskInstanceState.SUCCESS)


def test_a_resumed_task_is_not_ended_by_the_exit_of_the_try_that_parked_it(executor, tmp_path):
    # The first run parks (its worker is still finishing) when the task is dispatched again under the
    # same key, as a quickly answered human-in-the-loop task is.
    executor.queued_tasks["d"] = object()
    executor._process_workloads([Workload("d", seconds=1.0, runner_pid_file=str(tmp_path / "d1"))])
    parked = holder(executor, "d")
    executor.queued_tasks["d"] = object()
    executor._process_workloads([Workload("d", seconds=4.0, runner_pid_file=str(tmp_path / "d2"))])
    sync_until(executor, lambda: len([p for p, k in executor._held.items() if k == "d"]) == 2)
    sync_until(executor, lambda: parked not in executor._held)
    # The parked run's exit changed nothing: no success for "d" yet, nothing the scheduler would misread.
    assert executor.event_buffer.get("d", (None,))[0] != TaskInstanceState.SUCCESS
    sync_until(executor, lambda: executor.event_buffer.get("d", (None,))[0] == TaskInstanceState.SUCCESS)
    assert not executor._held and not executor._superseded


def test_workers_are_forked_as_tasks_wait_and_leave_when_idle(executor, tmp_path, monkeypatch):
    assert not executor.workers  # nothing forked before a task arrives
    submit(executor, Workload("e", seconds=1.0, runner_pid_file=str(tmp_path / "e")))
    assert len(executor.workers) == 1
    holder(executor, "e")
    submit(executor, Workload("f", seconds=1.0, runner_pid_file=str(tmp_path / "f")))
    assert len(executor.workers) == 2  # the first one is busy
    sync_until(executor, lambda: all(executor.event_buffer.get(k, (None,))[0] == TaskInstanceState.SUCCESS for k in "ef"))
    monkeypatch.setattr(executor_module, "WORKER_IDLE_SECONDS", 0.3)
    sync_until(executor, lambda: not executor.workers)
    assert executor._retiring == 0 and not executor._held
    assert all(state == TaskInstanceState.SUCCESS for state, _ in executor.event_buffer.values())  # nothing "lost"
    submit(executor, Workload("g", seconds=0.1, runner_pid_file=str(tmp_path / "g")))
    assert len(executor.workers) == 1
    sync_until(executor, lambda: executor.event_buffer.get("g", (None,))[0] == TaskInstanceState.SUCCESS)
