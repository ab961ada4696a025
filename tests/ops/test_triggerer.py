"""ops/triggerer.py: the trigger runner's idle second ends when a trigger finishes."""

from __future__ import annotations

import inspect
import time

import anyio
import pytest

import airflow.jobs.triggerer_job_runner as triggerer_job_runner
from ops import triggerer


@pytest.fixture
def installed(monkeypatch):
    async def run_trigger(self, trigger_id, trigger, timeout_after=None, context=None):
        await anyio.sleep(0.05)  # the trigger polls, fires, returns

    monkeypatch.setattr(triggerer_job_runner, "anyio", anyio)
    monkeypatch.setattr(triggerer_job_runner.TriggerRunner, "run_trigger", run_trigger)
    return triggerer.install()


def test_airflow_still_idles_as_the_patch_expects():
    # If this fails, Airflow changed its trigger runner loop: revisit ops/triggerer.py.
    loop = inspect.getsource(triggerer_job_runner.TriggerRunner.arun)
    assert "with anyio.move_on_after(1):" in loop and "await stop_event.wait()" in loop
    assert "self.run_trigger(" in inspect.getsource(triggerer_job_runner.TriggerRunner.create_triggers)


def test_a_finishing_trigger_ends_the_idle_wait(installed):
    async def scenario() -> float:
        async with anyio.create_task_group() as tg:
            tg.start_soon(triggerer_job_runner.TriggerRunner.run_trigger, object(), 1, object())
            started = time.monotonic()
            with triggerer_job_runner.anyio.move_on_after(1):  # as TriggerRunner.arun idles
                await anyio.Event().wait()
            return time.monotonic() - started

    assert anyio.run(scenario) < 0.5


def test_a_wake_while_the_loop_is_busy_skips_the_next_idle(installed):
    async def scenario() -> tuple[float, float]:
        installed.wake()  # no wait in progress: the next one does not wait
        started = time.monotonic()
        with triggerer_job_runner.anyio.move_on_after(1):
            await anyio.Event().wait()
        first = time.monotonic() - started
        started = time.monotonic()
        with triggerer_job_runner.anyio.move_on_after(0.3):  # nothing woke it: the full wait
            await anyio.Event().wait()
        return first, time.monotonic() - started

    first, second = anyio.run(scenario)
    assert first < 0.2 and second >= 0.29


def test_everything_else_is_anyio(installed):
    assert triggerer_job_runner.anyio.Event is anyio.Event
