"""RecoveringCeleryExecutor: a task stuck in queued is revoked only when no live worker holds it.

The workers' answer is Celery's ``query_task`` broadcast reply (``{worker: {task_id: [state,
request]}}``); here it comes from a stand-in for ``celery_app.control``, the one part of Celery
these tests replace. The production e2e (tests/e2e/test_production.py) runs the real broadcast
against live and killed workers.
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.sdk import timezone

from bitbuddies_airflow import celery_executor
from bitbuddies_airflow.celery_executor import RecoveringCeleryExecutor


class Control:
    """``celery_app.control``: ``inspect(timeout).query_task(*ids)`` and ``revoke(id)``."""

    def __init__(self, replies=None, fails: bool = False):
        self.replies = replies or {}
        self.fails = fails
        self.queries: list[tuple[str, ...]] = []
        self.revoked: list[str] = []

    def inspect(self, timeout: float):
        def query_task(*ids):
            self.queries.append(ids)
            if self.fails:
                raise ConnectionError("broker unreachable")
            return {worker: {t: info for t, info in tasks.items() if t in ids} for worker, tasks in self.replies.items()}

        return SimpleNamespace(query_task=query_task)

    def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)


def stuck(executor: RecoveringCeleryExecutor, n: int) -> SimpleNamespace:
    """A queued task instance the executor sent to Celery as message ``celery-{n}``."""
    key = TaskInstanceKey("bitbuddies_generate", f"run-{n}", "animate", 1)
    ti = SimpleNamespace(key=key, id=f"ti-{n}", queued_dttm=timezone.utcnow() - timedelta(minutes=5))
    executor.workloads[executor.get_task_key(ti) if executor.supports_task_instance_uuid else key] = SimpleNamespace(task_id=f"celery-{n}")
    executor.running.add(executor.get_task_key(ti) if executor.supports_task_instance_uuid else key)
    return ti


@pytest.fixture
def executor(monkeypatch):
    running = RecoveringCeleryExecutor()
    monkeypatch.setattr(celery_executor.conf, "getfloat", lambda section, key, **kw: 40.0)
    return running


def with_control(monkeypatch, executor, control: Control) -> Control:
    monkeypatch.setattr(executor, "celery_app", SimpleNamespace(control=control))
    return control


def test_a_task_a_live_worker_holds_is_left_queued_and_asked_about_again_later(executor, monkeypatch):
    control = with_control(monkeypatch, executor, Control({"celery@media-1": {"celery-1": ["reserved", {}]}}))
    ti = stuck(executor, 1)
    before = timezone.utcnow()
    with pytest.raises(NotImplementedError):
        executor.revoke_task(ti=ti)
    assert control.revoked == [] and len(executor.workloads) == 1
    # Stuck again for the scheduler's query RECHECK_S from now: queued_dttm = now - (40 - 15) s.
    moved_back = before - ti.queued_dttm
    assert timedelta(seconds=24) <= moved_back <= timedelta(seconds=26)


def test_a_task_nobody_holds_is_revoked_and_forgotten(executor, monkeypatch):
    control = with_control(monkeypatch, executor, Control({"celery@media-1": {"celery-9": ["active", {}]}}))
    ti = stuck(executor, 1)
    executor.revoke_task(ti=ti)
    assert control.revoked == ["celery-1"]
    assert executor.workloads == {} and not executor.running


def test_workers_that_cannot_be_asked_hold_nothing(executor, monkeypatch):
    control = with_control(monkeypatch, executor, Control(fails=True))
    ti = stuck(executor, 1)
    executor.revoke_task(ti=ti)
    assert control.revoked == ["celery-1"]


def test_one_broadcast_answers_for_every_task_stuck_in_one_check(executor, monkeypatch):
    control = with_control(monkeypatch, executor, Control({"celery@default-1": {"celery-2": ["active", {}]}}))
    lost, held = stuck(executor, 1), stuck(executor, 2)
    executor.revoke_task(ti=lost)
    with pytest.raises(NotImplementedError):
        executor.revoke_task(ti=held)
    assert len(control.queries) == 1 and set(control.queries[0]) == {"celery-1", "celery-2"}
    assert control.revoked == ["celery-1"]
